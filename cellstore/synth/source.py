"""Which folder a `source` setting means: a real BBBC021 folder, or (empty) the embedded demo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cellstore.sources.folder import existing_source, folder_digest, source_path
from cellstore.synth.demo import DEMO_FOLDER, demo_fingerprint, demo_source


def resolve_source(
    source: str,
    cache_dir: Path,
    base: Path | None = None,
    progress: Callable[..., None] | None = None,
) -> Path:
    """The source folder: `source` itself, or the embedded demo when `source` is empty.

    A relative `source` is taken from `base` (the project folder), else the working folder.
    The demo is generated once into `cache_dir/demo_source` (see `cellstore.synth.demo`);
    `progress(advance, total)` (a stage context's) is told about each plate rendered.
    """
    if source.strip():
        return existing_source(source, base)
    reported = [0]

    def fields_done(done: int, total: int) -> None:
        if progress is not None:
            progress(done - reported[0], total)
            reported[0] = done

    return demo_source(cache_dir, progress=fields_done)


def source_digest(source: str, cache_dir: Path | None = None, base: Path | None = None) -> str:
    """A digest that changes when the source changes (see `folder_digest`).

    The empty source (the demo) is digested by its generation parameters and by its cached
    folder in `cache_dir`, so a deleted cache is generated again.
    """
    if not source.strip():
        cached = "" if cache_dir is None else folder_digest(cache_dir / DEMO_FOLDER)
        return f"demo:{demo_fingerprint()}:{cached}"
    return folder_digest(source_path(source, base))
