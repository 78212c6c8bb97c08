"""The parameters that determine a generated source, kept import-light for fingerprints."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

# Bump when the generator's output changes for the same parameters (names the model).
GENERATOR_VERSION = "4"
SUMMARY_FILE = "cellstore_synth.json"
# Every module of this package but these decides what a source holds: their bytes enter
# every fingerprint, so a constant tuned without a version bump (or a new generator module)
# still invalidates the cached sources. These only cache, locate or approximate sources.
NOT_GENERATOR_MODULES = frozenset({"__init__.py", "demo.py", "source.py", "proxy.py"})


@functools.cache
def generator_code_digest() -> str:
    """sha256 (16 hex digits) of the generator's source files (see NOT_GENERATOR_MODULES)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.name not in NOT_GENERATOR_MODULES:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class SynthParams:
    """Everything that determines a generated source (its fingerprint)."""

    plates: tuple[str, ...] | None = None  # None: every plate of the metadata
    sites: int | None = None  # None: every site (4); N: sites 1..N of each well
    scale: float = 1.0  # 1: 1280×1024 images; 0.5: 640×512 (same cells, coarser pixels)
    seed: int = 0
    wells: str = "all"  # "all" or "annotated" (treatments in moa.csv, DMSO included)
    density: float = 1.0  # multiplies the number of cells per field
    batch_strength: float = 1.0  # multiplies the Week effects in phenotype space (1: calibrated)
    heterogeneity: float = 1.0  # multiplies the within-MoA spread of compounds (1: calibrated)

    def fingerprint(self) -> str:
        generator = {"version": GENERATOR_VERSION, "code": generator_code_digest()}
        payload = json.dumps(asdict(self) | generator, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
