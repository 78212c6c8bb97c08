"""Which folder a `source` setting means, and a cheap digest of what is in it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from cellstore.sources.bbbc021 import IMAGE_CSV, MOA_CSV
from cellstore.sources.csvfile import MetadataError


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
    if not source.strip():
        from cellstore.synth import demo_source

        reported = [0]

        def fields_done(done: int, total: int) -> None:
            if progress is not None:
                progress(done - reported[0], total)
                reported[0] = done

        return demo_source(cache_dir, progress=fields_done)
    folder = Path(source).expanduser()
    if base is not None and not folder.is_absolute():
        folder = base / folder
    if not folder.is_dir():
        raise MetadataError(f"source folder {folder} does not exist (setting `source`)")
    return folder.resolve()


def source_digest(source: str, cache_dir: Path | None = None, base: Path | None = None) -> str:
    """A digest that changes when the source's metadata or plate folders change.

    It hashes (name, size, mtime) of the metadata files and (path, mtime) of every plate
    folder (`WeekN/WeekN_PLATE`): adding, removing or renaming an image changes its
    folder's mtime, adding a plate adds a folder. No image is opened, so it costs
    milliseconds. The empty source (the demo) is digested by its generation parameters
    and by its cached folder in `cache_dir`, so a deleted cache is generated again.
    A relative `source` is taken from `base` (the project folder), as `resolve_source` does.
    """
    if not source.strip():
        from cellstore.synth import demo_fingerprint

        cached = "" if cache_dir is None else _folder_digest(cache_dir / "demo_source")
        return f"demo:{demo_fingerprint()}:{cached}"
    folder = Path(source).expanduser()
    if base is not None and not folder.is_absolute():
        folder = base / folder
    return _folder_digest(folder)


def _folder_digest(folder: Path) -> str:
    digest = hashlib.sha256(str(folder.resolve()).encode())
    if not folder.is_dir():
        return f"missing:{digest.hexdigest()}"
    for name in (IMAGE_CSV, f"{IMAGE_CSV}.gz", MOA_CSV, f"{MOA_CSV}.gz"):
        path = folder / name
        if path.is_file():
            stat = path.stat()
            digest.update(f"{name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    for week in sorted(p for p in folder.iterdir() if p.is_dir()):
        for plate in sorted(p for p in week.iterdir() if p.is_dir()):
            stat = plate.stat()
            digest.update(f"{plate.relative_to(folder)}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
