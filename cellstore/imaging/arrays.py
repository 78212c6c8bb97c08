"""Array helpers: bytes round trip, block-mean downscaling and upsampling."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def to_bytes(array: np.ndarray) -> tuple[bytes, list[int], str]:
    """C-order bytes, shape and dtype name: what a table stores to rebuild `array`."""
    contiguous = np.ascontiguousarray(array)
    return contiguous.tobytes(), list(contiguous.shape), contiguous.dtype.name


def from_bytes(buffer: bytes, shape: Sequence[int], dtype: str) -> np.ndarray:
    """Rebuild an array stored by `to_bytes`; a size mismatch is a clear error."""
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if len(buffer) != expected:
        raise ValueError(
            f"array bytes: got {len(buffer)} bytes, expected {expected} for shape "
            f"{list(shape)} and dtype {dtype}"
        )
    return np.frombuffer(buffer, dtype=dtype).reshape(tuple(shape))


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over non-overlapping factor × factor blocks, as float32.

    Rows/columns that do not fill a whole block are dropped: output shape is
    (H // factor, W // factor). Strided sums are ~10× faster than reshape(...).mean here.
    """
    if factor < 1:
        raise ValueError(f"block_mean: factor must be >= 1, got {factor}")
    if factor == 1:
        return image.astype(np.float32, copy=False)
    h, w = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    if h == 0 or w == 0:
        raise ValueError(f"block_mean: image {image.shape} is smaller than factor {factor}")
    total = np.zeros((h // factor, w // factor), np.float32)
    for dy in range(factor):
        for dx in range(factor):
            total += image[dy:h:factor, dx:w:factor]
    total /= factor * factor
    return total


def _linear_weights(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower index, upper index and upper weight mapping n_out pixel centres onto n_in."""
    position = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    position = np.clip(position, 0, n_in - 1)
    lower = np.floor(position).astype(np.intp)
    upper = np.minimum(lower + 1, n_in - 1)
    return lower, upper, (position - lower).astype(np.float32)


def upsample(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a smooth 2-D function to `shape` (pixel centres aligned), float32.

    Edges are clamped (nearest), so a constant function stays exactly constant.
    """
    small = small.astype(np.float32, copy=False)
    y0, y1, wy = _linear_weights(shape[0], small.shape[0])
    x0, x1, wx = _linear_weights(shape[1], small.shape[1])
    rows = small[y0] * (1 - wy)[:, None] + small[y1] * wy[:, None]  # (H, w)
    full = rows[:, x0] * (1 - wx)[None, :] + rows[:, x1] * wx[None, :]  # (H, W)
    # Column gathers come out in Fortran order; C order makes later per-pixel maths ~6× faster.
    return np.ascontiguousarray(full)
