"""Illumination correction: a smooth per plate × channel function, the mean image of the plate."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from cellstore.imaging.arrays import block_mean, from_bytes, upsample


@dataclass
class MeanImage:
    """Running sum of block-mean-downscaled images of one plate × channel."""

    total: np.ndarray | None = None  # (H // downscale, W // downscale) float64
    count: int = 0

    def add(self, image: np.ndarray, downscale: int) -> None:
        small = block_mean(image, downscale).astype(np.float64)
        if self.total is None:
            self.total = small
        elif self.total.shape != small.shape:
            raise ValueError(
                f"illumination: image downscales to {small.shape}, others to {self.total.shape}"
            )
        else:
            self.total += small
        self.count += 1

    def merge(self, other: MeanImage) -> None:
        if other.total is None:
            return
        if self.total is None:
            self.total, self.count = other.total.copy(), other.count
            return
        self.total += other.total
        self.count += other.count

    def mean(self) -> np.ndarray:
        if self.total is None or self.count == 0:
            raise ValueError("illumination: no image was added")
        return self.total / self.count


def illumination_function(mean_image: np.ndarray, median_size: int) -> np.ndarray:
    """Median-filter the mean image and scale it to mean 1 (float32).

    Dividing a raw image by this keeps its overall intensity scale while flattening the
    shading. Values are floored at 5% of the mean so a dark corner never divides by ~0.
    """
    from scipy import ndimage as ndi

    size = max(1, int(median_size))
    smooth = ndi.median_filter(mean_image.astype(np.float64), size=size, mode="nearest")
    level = float(smooth.mean())
    if not np.isfinite(level) or level <= 0:
        raise ValueError("illumination: the mean image is not positive")
    return np.maximum(smooth / level, 0.05).astype(np.float32)


def flat_function(shape: tuple[int, int]) -> np.ndarray:
    """The identity correction (all ones), for plates without a usable image."""
    return np.ones(shape, np.float32)


@lru_cache(maxsize=16)
def full_resolution(
    buffer: bytes, small_shape: tuple[int, int], dtype: str, shape: tuple[int, int]
) -> np.ndarray:
    """Decode a stored illumination function and upsample it to the image shape (cached).

    Workers see the same plate's function for many fields in a row; caching saves the
    ~15 ms upsampling per field and channel.
    """
    small = from_bytes(buffer, small_shape, dtype)
    full = upsample(small, shape)
    full.setflags(write=False)
    return full


def correct(image: np.ndarray, function: np.ndarray) -> np.ndarray:
    """Illumination-corrected float32 image: raw / function (both full resolution)."""
    if image.shape != function.shape:
        raise ValueError(
            f"illumination: image shape {image.shape} != function shape {function.shape}"
        )
    return np.divide(image, function, dtype=np.float32)
