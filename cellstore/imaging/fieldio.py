"""Reading a field's channel TIFFs and deciding whether a field is usable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

CHANNELS = ("dapi", "tubulin", "actin")

# Reasons a field is rejected (column `reason` of `nuclei_rejected`).
UNREADABLE = "unreadable"
SHAPE_MISMATCH = "shape_mismatch"
NOT_FINITE = "not_finite"
BLANK = "blank"
SATURATED = "saturated"
NO_NUCLEI = "no_nuclei"
REASONS = (UNREADABLE, SHAPE_MISMATCH, NOT_FINITE, BLANK, SATURATED, NO_NUCLEI)


class FieldRejected(Exception):
    """A field that cannot be processed; `reason` is one of REASONS, `detail` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class QualityLimits:
    """When a channel image counts as saturated (fraction of pixels at the dtype's maximum)."""

    max_saturated_fraction: float = 0.05


def read_channel(path: str) -> np.ndarray:
    """Read one 2-D channel image; any failure becomes FieldRejected(unreadable)."""
    import tifffile

    try:
        image = tifffile.imread(path)
    except Exception as error:  # noqa: BLE001 - any reader failure means an unusable file
        raise FieldRejected(UNREADABLE, f"{path}: {type(error).__name__}: {error}") from error
    if image.ndim != 2:
        raise FieldRejected(UNREADABLE, f"{path}: expected a 2-D image, got shape {image.shape}")
    return image


def check_channel(name: str, image: np.ndarray, limits: QualityLimits) -> None:
    """Raise FieldRejected if a channel is non-finite, blank (constant) or saturated."""
    if image.dtype.kind == "f":
        if not np.isfinite(image).all():
            raise FieldRejected(NOT_FINITE, f"{name}: NaN or infinite pixels")
        ceiling = None
    elif image.dtype.kind in "ui":
        ceiling = np.iinfo(image.dtype).max
    else:
        raise FieldRejected(UNREADABLE, f"{name}: unsupported pixel type {image.dtype}")
    low, high = image.min(), image.max()
    if low == high:
        raise FieldRejected(BLANK, f"{name}: every pixel equals {low}")
    if ceiling is not None and high == ceiling:
        fraction = float(np.count_nonzero(image == ceiling)) / image.size
        if fraction > limits.max_saturated_fraction:
            raise FieldRejected(
                SATURATED,
                f"{name}: {fraction:.1%} of pixels at {ceiling} "
                f"(limit {limits.max_saturated_fraction:.1%})",
            )


def read_field(
    paths: Mapping[str, str],
    limits: QualityLimits | None = None,
    channels: tuple[str, ...] = CHANNELS,
) -> dict[str, np.ndarray]:
    """Read and check the named channels of one field; all must share one 2-D shape."""
    limits = limits or QualityLimits()
    images: dict[str, np.ndarray] = {}
    for name in channels:
        image = read_channel(paths[name])
        check_channel(name, image, limits)
        images[name] = image
    shapes = {name: image.shape for name, image in images.items()}
    if len(set(shapes.values())) > 1:
        raise FieldRejected(SHAPE_MISMATCH, f"channel shapes differ: {shapes}")
    return images
