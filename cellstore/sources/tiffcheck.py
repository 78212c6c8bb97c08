"""Cheap validation of one TIFF file: exists, parses, complete; its shape and dtype."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cellstore.sources.reasons import MISSING_FILE, TRUNCATED_TIFF, UNREADABLE_TIFF


@dataclass(frozen=True)
class TiffInfo:
    """What a complete TIFF's first page holds: an array of `shape` and `dtype`.

    A plain grey image has shape (height, width); anything else (RGB, a stack) is for the
    caller to reject as the wrong shape.
    """

    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class TiffProblem:
    """Why a file is not a usable TIFF: `reason` is a code from `reasons`."""

    reason: str
    detail: str


def inspect_tiff(path: Path) -> TiffInfo | TiffProblem:
    """Read only the TIFF header of `path` (no pixel decoding: ~0.1 ms a file).

    A file is truncated when the bytes its first page points at run past the end of the
    file; that is how a partial copy or an interrupted write looks.
    """
    import tifffile

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return TiffProblem(MISSING_FILE, f"{path}: no such file")
    except OSError as exc:
        return TiffProblem(UNREADABLE_TIFF, f"{path}: {exc}")
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            shape = tuple(int(n) for n in page.shape)
            dtype = str(page.dtype) if page.dtype is not None else "unknown"
            ends = [
                int(offset) + int(count)
                for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True)
            ]
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for broken files
        return TiffProblem(UNREADABLE_TIFF, f"{path}: not a readable TIFF ({exc})")
    if not ends or max(ends) > size:
        needed = max(ends) if ends else 0
        return TiffProblem(
            TRUNCATED_TIFF, f"{path}: image data needs {needed} bytes, file has {size}"
        )
    return TiffInfo(shape=shape, dtype=dtype)
