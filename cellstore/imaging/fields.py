"""A batch of fields on a worker: their rows, their channel images, their plate's illumination."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from cellstore.imaging import fieldio
from cellstore.imaging.arrays import block_mean
from cellstore.imaging.fieldio import CHANNELS, FieldRejected, QualityLimits
from cellstore.imaging.illumination import full_resolution

# Fields reaching crops / features already passed the quality checks of the nuclei stage.
NO_QUALITY_LIMITS = QualityLimits(max_saturated_fraction=1.0)


@dataclass(frozen=True)
class Geometry:
    """Sizes given in pixels of a `reference_width`-wide image, scaled to each field's width
    (a synthetic source written at scale 0.5 gets half-size nuclei, boxes and distances).
    reference_width = 0 turns scaling off."""

    reference_width: int = 1280

    def scale(self, width: int) -> float:
        return width / self.reference_width if self.reference_width > 0 else 1.0


@dataclass(frozen=True)
class PlateIllumination:
    """One plate's stored illumination functions and intensity limits, per channel."""

    plate: str
    functions: dict[str, tuple[bytes, tuple[int, int], str]]  # channel → (bytes, shape, dtype)
    limits: dict[str, tuple[float, float]]  # channel → (low, high) corrected intensity

    def function(self, channel: str, shape: tuple[int, int], factor: int = 1) -> np.ndarray:
        """Correction function for images of `shape`, block-mean reduced by `factor`
        (cached per worker process)."""
        if channel not in self.functions:
            raise ValueError(f"illumination: plate {self.plate} has no {channel} function")
        buffer, small_shape, dtype = self.functions[channel]
        return _reduced_function(buffer, tuple(small_shape), dtype, tuple(shape), factor)


@lru_cache(maxsize=16)
def _reduced_function(
    buffer: bytes, small_shape: tuple[int, int], dtype: str, shape: tuple[int, int], factor: int
) -> np.ndarray:
    full = full_resolution(buffer, small_shape, dtype, shape)
    if factor == 1:
        return full
    reduced = block_mean(full, factor)
    reduced.setflags(write=False)
    return reduced


@dataclass(frozen=True)
class Field:
    """One field of view and the rows of the batch table that belong to it."""

    image_id: str
    plate: str
    well: str
    paths: dict[str, str]
    shape: tuple[int, int]  # (height, width) from the images table
    rows: Any  # pyarrow Table slice


def iter_fields(batch: Any) -> Iterator[Field]:
    """Group a batch (rows sorted by image_id, images columns present) into fields."""
    ids = batch["image_id"].to_numpy(zero_copy_only=False)
    starts = list(np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])) + [len(ids)]
    columns = {
        name: batch[name].to_pylist()
        for name in ("image_id", "plate", "well", "width", "height")
        + tuple(f"path_{c}" for c in CHANNELS)
    }
    for start, stop in zip(starts[:-1], starts[1:], strict=True):
        yield Field(
            image_id=columns["image_id"][start],
            plate=columns["plate"][start],
            well=columns["well"][start],
            paths={c: columns[f"path_{c}"][start] for c in CHANNELS},
            shape=(int(columns["height"][start]), int(columns["width"][start])),
            rows=batch.slice(start, stop - start),
        )


def read_checked(item: Field, limits: QualityLimits, channels=CHANNELS) -> dict[str, np.ndarray]:
    """Read a field's channels; their shape must match the images table's width × height."""
    images = fieldio.read_field(item.paths, limits, channels)
    shape = next(iter(images.values())).shape
    if shape != item.shape:
        raise FieldRejected(
            fieldio.SHAPE_MISMATCH,
            f"image is {shape[1]}×{shape[0]}, images table says {item.shape[1]}×{item.shape[0]}",
        )
    return images
