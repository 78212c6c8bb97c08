"""Scratch space of builds: Parquet parts under `tmp/<run>/`, half-generated sources in `cache/`."""

from __future__ import annotations

import shutil
from pathlib import Path


def stale_scratch(root: Path) -> list[Path]:
    """Scratch folders and files in warehouse `root`; call it holding the build lock, when
    every one of them belongs to a build that is no longer running (killed, or crashed)."""
    found = sorted((root / "tmp").glob("*")) if (root / "tmp").is_dir() else []
    cache = root / "cache"
    if cache.is_dir():
        # synth.demo generates into `<name>.tmp.*` and renames when complete
        found += sorted(cache.glob("*.tmp.*"))
    return found


def size_of(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())


def clear_scratch(root: Path, dry_run: bool = False) -> tuple[int, int]:
    """Delete stale scratch (see `stale_scratch`); (entries, bytes) deleted or to delete."""
    entries = stale_scratch(root)
    total = 0
    for path in entries:
        total += size_of(path)
        if dry_run:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(entries), total
