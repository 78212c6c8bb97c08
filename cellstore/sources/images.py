"""Load a BBBC021-layout source into the `images`, `images_rejected` and `moa` tables."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa

from cellstore.sources import reasons
from cellstore.sources.bbbc021 import CHANNELS, FieldRow, read_image_rows, read_moa
from cellstore.sources.tiffcheck import TiffInfo, TiffProblem, inspect_tiff

# Columns both tables share (rejected rows leave those that did not parse NULL).
FIELD_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("plate", pa.string()),
        ("well", pa.string()),
        ("site", pa.int32()),
        ("replicate", pa.int32()),
        ("batch", pa.string()),
        ("compound", pa.string()),
        ("concentration", pa.float64()),
        ("path_dapi", pa.string()),
        ("path_tubulin", pa.string()),
        ("path_actin", pa.string()),
        ("table_number", pa.int32()),
        ("image_number", pa.int32()),
    ]
)
IMAGES_SCHEMA = pa.schema(
    list(FIELD_SCHEMA)
    + [
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("dtype", pa.string()),
        pa.field("source_row", pa.int32()),
    ]
)
REJECTED_SCHEMA = pa.schema(
    list(FIELD_SCHEMA)
    + [
        pa.field("source_file", pa.string()),
        pa.field("source_row", pa.int32()),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
    ]
)
MOA_SCHEMA = pa.schema(
    [("compound", pa.string()), ("concentration", pa.float64()), ("moa", pa.string())]
)

# Header reads are I/O bound (network or cold disks): a few threads hide the latency.
TIFF_THREADS = 4


def load_images(
    source: Path,
    *,
    dtype: str = "uint16",
    shape: Sequence[int] | None = None,
    threads: int = TIFF_THREADS,
) -> tuple[pa.Table, pa.Table]:
    """(images, images_rejected) for the BBBC021-layout folder `source`.

    Every data row of image.csv ends up in exactly one of the two tables. Checks, in order:
    the row parses (else `bad_metadata`), its (plate, well, site) is new (else
    `duplicate_field`), and each channel file exists, parses and is complete (else
    `missing_file` / `unreadable_tiff` / `truncated_tiff`), has `shape` = (height, width)
    (default: the most common shape of the source's readable fields) and `dtype`.
    """
    csv_path, rows = read_image_rows(source)
    accepted: list[FieldRow] = []
    rejected: list[dict] = []
    first_row_of: dict[str, int] = {}
    for row in rows:
        if not row.ok:
            rejected.append(_rejection(row, reasons.BAD_METADATA, "; ".join(row.problems)))
            continue
        image_id = row.values["image_id"]
        if image_id in first_row_of:
            detail = f"field {image_id} is already listed on row {first_row_of[image_id]}"
            rejected.append(_rejection(row, reasons.DUPLICATE_FIELD, detail))
            continue
        first_row_of[image_id] = row.source_row
        accepted.append(row)

    paths = [Path(row.values[f"path_{key}"]) for row in accepted for key, _, _ in CHANNELS]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        infos = list(pool.map(inspect_tiff, paths, chunksize=64))
    per_row = [infos[i : i + len(CHANNELS)] for i in range(0, len(infos), len(CHANNELS))]
    expected_shape = tuple(shape) if shape is not None else _most_common_shape(per_row)

    images: list[dict] = []
    for row, channel_infos in zip(accepted, per_row, strict=True):
        problem = _file_problem(channel_infos, expected_shape, dtype)
        if problem is not None:
            rejected.append(_rejection(row, *problem))
            continue
        info = channel_infos[0]
        assert isinstance(info, TiffInfo)
        height, width = info.shape
        images.append(
            row.values
            | {"width": width, "height": height, "dtype": info.dtype, "source_row": row.source_row}
        )
    for record in rejected:
        record["source_file"] = str(csv_path)
    rejected.sort(key=lambda record: record["source_row"])
    return (
        pa.Table.from_pylist(images, schema=IMAGES_SCHEMA),
        pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA),
    )


def load_moa(source: Path) -> pa.Table:
    """The `moa` table: (compound, concentration) → moa, from the source's moa.csv."""
    return pa.Table.from_pylist(read_moa(source), schema=MOA_SCHEMA)


def _rejection(row: FieldRow, reason: str, detail: str) -> dict:
    return row.values | {"source_row": row.source_row, "reason": reason, "detail": detail}


def _most_common_shape(per_row: list[list[TiffInfo | TiffProblem]]) -> tuple[int, ...] | None:
    """The commonest 2-d shape among fields whose three channels read and agree."""
    counts: Counter[tuple[int, ...]] = Counter()
    for infos in per_row:
        if all(isinstance(info, TiffInfo) for info in infos):
            shapes = {info.shape for info in infos}  # type: ignore[union-attr]
            if len(shapes) == 1 and len(next(iter(shapes))) == 2:
                counts[shapes.pop()] += 1
    return counts.most_common(1)[0][0] if counts else None


def _file_problem(
    infos: list[TiffInfo | TiffProblem],
    expected_shape: tuple[int, ...] | None,
    dtype: str,
) -> tuple[str, str] | None:
    """(reason, detail) for the first failing check of a field's channel files, or None."""
    named = list(zip((stem for _, stem, _ in CHANNELS), infos, strict=True))
    for reason in (reasons.MISSING_FILE, reasons.UNREADABLE_TIFF, reasons.TRUNCATED_TIFF):
        failing = [
            f"{stem}: {info.detail}"
            for stem, info in named
            if isinstance(info, TiffProblem) and info.reason == reason
        ]
        if failing:
            return reason, "; ".join(failing)
    wrong_shape = [
        f"{stem}: shape {_shape_text(info.shape)}, expected {_shape_text(expected_shape)}"
        for stem, info in named
        if isinstance(info, TiffInfo) and info.shape != expected_shape
    ]
    if wrong_shape:
        return reasons.WRONG_SHAPE, "; ".join(wrong_shape)
    wrong_dtype = [
        f"{stem}: dtype {info.dtype}, expected {dtype}"
        for stem, info in named
        if isinstance(info, TiffInfo) and info.dtype != dtype
    ]
    if wrong_dtype:
        return reasons.WRONG_DTYPE, "; ".join(wrong_dtype)
    return None


def _shape_text(shape: tuple[int, ...] | None) -> str:
    """(1024, 1280) → '1024x1280' (height x width)."""
    return "x".join(str(n) for n in shape) if shape else "none"
