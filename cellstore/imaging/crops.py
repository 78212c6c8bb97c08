"""Single-cell crops: intensity normalisation, square boxes around nuclei, and a batch reader."""

from __future__ import annotations

from typing import Any

import numpy as np

BORDER_RULES = ("pad", "shift")


def intensity_limits(
    image: np.ndarray, low_percentile: float, high_percentile: float, stride: int = 4
) -> tuple[float, float]:
    """Robust (low, high) intensities of an image from a strided pixel sample."""
    sample = np.asarray(image)[::stride, ::stride].ravel()
    low, high = np.percentile(sample, [low_percentile, high_percentile])
    return float(low), float(high)


def gain_offset(function: np.ndarray, low: float, high: float) -> tuple[np.ndarray, float]:
    """Per-pixel gain and scalar offset mapping raw → uint8: raw * gain - offset.

    Folds illumination correction (raw / function) and the linear map [low, high] → [0, 255]
    into one multiply-subtract, so a field costs two passes per channel.
    """
    span = max(high - low, 1e-6)
    gain = (255.0 / span) / function.astype(np.float32)
    return gain.astype(np.float32), float(255.0 * low / span)


def to_uint8(raw: np.ndarray, gain: np.ndarray | float, offset: float) -> np.ndarray:
    """clip(raw * gain - offset, 0, 255) as uint8 (rounded)."""
    scaled = np.multiply(raw, gain, dtype=np.float32)
    scaled -= offset - 0.5  # +0.5: round to nearest on the truncating cast below
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


def crop_boxes(
    stack: np.ndarray, x: np.ndarray, y: np.ndarray, box: int, border: str = "pad"
) -> tuple[np.ndarray, np.ndarray]:
    """Square crops of a (C, H, W) stack centred on each (x, y) nucleus centre.

    The centre pixel (round(y), round(x)) lands at index box // 2 of the crop.
    Border rule, when a box reaches past the image edge:
      - "pad": the box stays centred; pixels outside the image are 0 (black);
      - "shift": the box is moved inside the image (the nucleus is then off-centre);
        an image smaller than the box is an error.
    Returns crops (N, C, box, box) of the stack's dtype and is_border (N,) bool: the centred
    box reached past the edge (padded or shifted).
    """
    if border not in BORDER_RULES:
        raise ValueError(f"crops: border must be one of {BORDER_RULES}, got {border!r}")
    if box < 1:
        raise ValueError(f"crops: box must be >= 1, got {box}")
    channels, height, width = stack.shape
    half = box // 2
    top = np.round(np.asarray(y, np.float64)).astype(np.intp) - half
    left = np.round(np.asarray(x, np.float64)).astype(np.intp) - half
    is_border = (top < 0) | (left < 0) | (top + box > height) | (left + box > width)
    out = np.zeros((len(top), channels, box, box), stack.dtype)
    if border == "shift":
        if box > height or box > width:
            raise ValueError(f"crops: box {box} does not fit in a {height}×{width} image")
        top = np.clip(top, 0, height - box)
        left = np.clip(left, 0, width - box)
        for i, (t, le) in enumerate(zip(top, left, strict=True)):
            out[i] = stack[:, t : t + box, le : le + box]
        return out, is_border
    for i, (t, le) in enumerate(zip(top, left, strict=True)):
        y0, y1 = max(t, 0), min(t + box, height)
        x0, x1 = max(le, 0), min(le + box, width)
        if y0 < y1 and x0 < x1:
            out[i, :, y0 - t : y1 - t, x0 - le : x1 - le] = stack[:, y0:y1, x0:x1]
    return out, is_border


def binary_column(crops: np.ndarray) -> Any:
    """A pyarrow BinaryArray with one C-order crop per element, built without per-crop copies."""
    import pyarrow as pa

    n = len(crops)
    flat = np.ascontiguousarray(crops).reshape(n, -1)
    size = flat.shape[1]
    offsets = np.arange(n + 1, dtype=np.int64) * size
    if offsets[-1] < 2**31:
        return pa.Array.from_buffers(
            pa.binary(), n, [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(flat)]
        )
    return pa.Array.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(flat)]
    ).cast(pa.binary())


def _as_arrow(source: Any, columns: list[str]) -> Any:
    """A pyarrow Table of `columns` from a DuckDB relation, pyarrow Table or pandas/polars frame."""
    import pyarrow as pa

    if isinstance(source, pa.Table):
        table = source
    elif hasattr(source, "to_arrow_table"):  # DuckDB relation
        table = source.select(*columns).to_arrow_table()
    elif hasattr(source, "to_arrow"):  # polars
        table = source.to_arrow()
    elif hasattr(source, "columns") and hasattr(source, "iloc"):  # pandas
        table = pa.Table.from_pandas(source[columns], preserve_index=False)
    else:
        raise TypeError(
            f"read_crops: expected a DuckDB relation, pyarrow Table or data frame, "
            f"got {type(source).__name__}"
        )
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"read_crops: missing column(s) {missing}; a crops table has {columns}")
    return table.select(columns)


def _distinct_shapes(shapes: Any) -> list[tuple[int, ...]]:
    """Distinct values of a list<int> column, without a Python object per row."""
    if shapes.null_count:
        raise ValueError(f"read_crops: {shapes.null_count} row(s) have no shape")
    lengths = np.unique(shapes.value_lengths().to_numpy())
    if len(lengths) != 1:
        return [tuple(s) for s in {tuple(s) for s in shapes.to_pylist()}]
    values = shapes.flatten().to_numpy().reshape(len(shapes), int(lengths[0]))
    return [tuple(int(v) for v in row) for row in np.unique(values, axis=0)]


def read_crops(
    source: Any,
    *,
    column: str = "crop",
    as_torch: bool = False,
    dtype: str | None = None,
) -> Any:
    """Rebuild a batch (N, C, H, W) from rows of the `crops` table.

    source: a DuckDB relation (e.g. `con.sql("select * from crops where plate = ...")`),
        a pyarrow Table or a pandas/polars frame with the columns `crop`, `shape`, `dtype`.
    as_torch: return a torch tensor (torch is imported only then).
    dtype: cast the batch (e.g. "float32"); default keeps the stored dtype.
    All rows must share one shape and dtype; otherwise the error names the first odd row.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _as_arrow(source, [column, "shape", "dtype"])
    n = table.num_rows
    if n == 0:
        raise ValueError("read_crops: no rows selected")
    dtypes = pc.unique(table["dtype"]).to_pylist()
    shapes = _distinct_shapes(table["shape"].combine_chunks())
    if len(dtypes) != 1 or len(shapes) != 1:
        raise ValueError(
            f"read_crops: rows mix shapes {shapes} / dtypes {dtypes}; select one kind of crop"
        )
    shape, stored = shapes[0], np.dtype(dtypes[0])
    size = int(np.prod(shape)) * stored.itemsize
    crops = table[column].combine_chunks()
    if crops.null_count:
        raise ValueError(f"read_crops: {crops.null_count} row(s) have no crop bytes")
    offsets = np.frombuffer(crops.buffers()[1], np.int32 if crops.type == pa.binary() else np.int64)
    offsets = offsets[crops.offset : crops.offset + n + 1]
    lengths = np.diff(offsets)
    if (lengths != size).any():
        bad = int(np.flatnonzero(lengths != size)[0])
        raise ValueError(
            f"read_crops: row {bad} holds {lengths[bad]} bytes, expected {size} for shape "
            f"{list(shape)} and dtype {stored}"
        )
    data = np.frombuffer(crops.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    batch = data.view(stored).reshape((n, *shape))
    batch = batch.astype(dtype) if dtype else batch.copy()
    if as_torch:
        import torch

        return torch.from_numpy(batch)
    return batch
