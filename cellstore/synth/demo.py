"""The embedded demo source: its parameters, and generating it once into a cache folder."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from cellstore.synth.params import SUMMARY_FILE, SynthParams

# The demo covers every annotated treatment (103 + DMSO, 962 wells on all 55 plates and
# 10 Weeks) with one site per well at half resolution (640×512; nuclei ~10 px across).
# Why: the whole pipeline (images → ... → NSC/NSCB) must finish in ~10 minutes on a 2-core
# CPU. Unannotated wells add nothing to the evaluation, and one site already gives ~80
# cells per well (~75k cells in all); scale 0.5 keeps nuclei large enough for
# distance-transform segmentation and 48-px crops, at a quarter of the pixels of scale 1.
DEMO = SynthParams(plates=None, sites=1, scale=0.5, seed=0, wells="annotated", density=1.0)
DEMO_FOLDER = "demo_source"


def demo_fingerprint() -> str:
    """Changes when the demo's parameters or the generator change."""
    return DEMO.fingerprint()


def demo_source(
    cache_dir: Path | str,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """The demo source folder inside `cache_dir`, generating it first if needed.

    Reused when its summary's fingerprint matches the current demo. Generation goes into a
    temporary sibling folder that is renamed into place when complete, under a file lock,
    so concurrent callers wait for one another and a crash never leaves half a source.
    workers: rendering processes (default: 2, or 1 on a single core).
    """
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / DEMO_FOLDER
    with open(cache / f"{DEMO_FOLDER}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _fingerprint_of(target) == demo_fingerprint():
            return target
        from cellstore.synth.plates import generate  # heavy (scipy); only when generating

        scratch = Path(tempfile.mkdtemp(prefix=f"{DEMO_FOLDER}.tmp.", dir=cache))
        try:
            generate(
                scratch,
                plates=DEMO.plates,
                sites=DEMO.sites,
                scale=DEMO.scale,
                seed=DEMO.seed,
                wells=DEMO.wells,
                density=DEMO.density,
                workers=workers,
                progress=progress,
            )
            if target.exists():
                stale = Path(tempfile.mkdtemp(prefix=f"{DEMO_FOLDER}.old.", dir=cache))
                target.rename(stale / DEMO_FOLDER)
                shutil.rmtree(stale)
            scratch.rename(target)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch)
    return target


def _fingerprint_of(folder: Path) -> str | None:
    try:
        return json.loads((folder / SUMMARY_FILE).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        return None
