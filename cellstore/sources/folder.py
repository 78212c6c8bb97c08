"""A real source folder: where a `source` setting points, and a cheap digest of its contents."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cellstore.sources.bbbc021 import IMAGE_CSV, MOA_CSV
from cellstore.sources.csvfile import MetadataError


def source_path(source: str, base: Path | None = None) -> Path:
    """`source` as a path; a relative one is taken from `base` (the project folder)."""
    folder = Path(source).expanduser()
    if base is not None and not folder.is_absolute():
        folder = base / folder
    return folder


def existing_source(source: str, base: Path | None = None) -> Path:
    """The source folder, resolved; an error naming the setting if it does not exist."""
    folder = source_path(source, base)
    if not folder.is_dir():
        raise MetadataError(f"source folder {folder} does not exist (setting `source`)")
    return folder.resolve()


def folder_digest(folder: Path) -> str:
    """A digest that changes when the folder's metadata or plate folders change.

    It hashes (name, size, mtime) of the metadata files and (path, mtime) of every plate
    folder (`WeekN/WeekN_PLATE`): adding, removing or renaming an image changes its
    folder's mtime, adding a plate adds a folder. No image is opened, so it costs
    milliseconds.
    """
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
