"""CellProfiler-like handcrafted features per cell: shape, intensity, texture, correlation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from cellstore.imaging.shape import shape_features
from cellstore.imaging.texture import HARALICK, cooccurrence, haralick, quantize

# CellProfiler's MeasureObjectSizeShape names (skimage regionprops definitions).
SHAPE = (
    "Area",
    "Perimeter",
    "FormFactor",
    "Eccentricity",
    "Solidity",
    "Extent",
    "MajorAxisLength",
    "MinorAxisLength",
)
INTENSITY = (
    "IntegratedIntensity",
    "MeanIntensity",
    "StdIntensity",
    "MinIntensity",
    "MaxIntensity",
    "MassDisplacement",
)
COMPARTMENTS = ("Nuclei", "Cells", "Cytoplasm")


@dataclass(frozen=True)
class TextureParams:
    """Gray levels and pixel distance of the co-occurrence matrices; `limits` maps each
    channel name to the (low, high) intensities spread over the gray levels."""

    limits: Mapping[str, tuple[float, float]]
    distance: int = 3
    levels: int = 16


def feature_names(channels: tuple[str, ...]) -> list[str]:
    """Every column `measure_cells` returns, in order (CellProfiler-style names)."""
    names = [f"{c}_AreaShape_{s}" for c in ("Nuclei", "Cells") for s in SHAPE]
    names.append("Cytoplasm_AreaShape_Area")
    names += [f"{c}_Intensity_{f}_{ch}" for c in COMPARTMENTS for ch in channels for f in INTENSITY]
    names += [
        f"{c}_Texture_{f}_{ch}" for c in ("Nuclei", "Cells") for ch in channels for f in HARALICK
    ]
    names += [
        f"Cells_Correlation_Correlation_{a}_{b}"
        for k, a in enumerate(channels)
        for b in channels[k + 1 :]
    ]
    names.append("Cells_Neighbors_NumberOfNeighbors_Adjacent")
    return names


class _Moments:
    """Pixels of one label image grouped by label (sorted once, reused for every channel).

    Only labelled pixels are touched; per-label sums, minima and maxima are `reduceat`
    over the contiguous run of each label, ~10× cheaper than bincount / ufunc.at over
    the whole image.
    """

    def __init__(self, labels: np.ndarray, n: int) -> None:
        self.n = n
        inside = np.flatnonzero(labels)
        owner = labels.ravel()[inside]
        order = np.argsort(owner, kind="stable")
        self.pixels = inside[order]  # flat pixel indices, grouped by label
        sorted_owner = owner[order]
        self.present = np.unique(sorted_owner)  # labels with at least one pixel
        self.starts = np.searchsorted(sorted_owner, self.present)
        self.area = np.zeros(n)
        self.area[self.present - 1] = np.diff(np.r_[self.starts, len(sorted_owner)])
        rows, cols = np.divmod(self.pixels, labels.shape[1])
        self.rows, self.cols = rows.astype(np.float64), cols.astype(np.float64)
        self.sum_r = self._sum(self.rows)
        self.sum_c = self._sum(self.cols)

    def _reduce(self, ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n)
        if len(self.present):
            out[self.present - 1] = ufunc.reduceat(values, self.starts)
        return out

    def _sum(self, values: np.ndarray) -> np.ndarray:
        return self._reduce(np.add, values)

    def gather(self, image: np.ndarray) -> np.ndarray:
        return image.ravel()[self.pixels].astype(np.float64)

    def divide(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)

    def intensity(self, image: np.ndarray) -> dict[str, np.ndarray]:
        values = self.gather(image)
        total = self._sum(values)
        mean = self.divide(total, self.area)
        variance = np.maximum(self.divide(self._sum(values * values), self.area) - mean**2, 0)
        # Distance between the geometric and the intensity-weighted centre.
        dr = self.divide(self._sum(self.rows * values), total) - self.divide(self.sum_r, self.area)
        dc = self.divide(self._sum(self.cols * values), total) - self.divide(self.sum_c, self.area)
        return {
            "IntegratedIntensity": total,
            "MeanIntensity": mean,
            "StdIntensity": np.sqrt(variance),
            "MinIntensity": self._reduce(np.minimum, values),
            "MaxIntensity": self._reduce(np.maximum, values),
            "MassDisplacement": np.where(total > 0, np.hypot(dr, dc), 0.0),
        }

    def correlation(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Pearson correlation of two images' pixels within each label (0 when flat)."""
        x, y = self.gather(a), self.gather(b)
        mx, my = self.divide(self._sum(x), self.area), self.divide(self._sum(y), self.area)
        cov = self.divide(self._sum(x * y), self.area) - mx * my
        vx = self.divide(self._sum(x * x), self.area) - mx**2
        vy = self.divide(self._sum(y * y), self.area) - my**2
        denominator = np.sqrt(np.maximum(vx, 0) * np.maximum(vy, 0))
        return np.divide(cov, denominator, out=np.zeros(self.n), where=denominator > 1e-12)


def _adjacent_counts(labels: np.ndarray, n: int) -> np.ndarray:
    """Number of distinct other labels touching each label (4-connectivity)."""
    pairs = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        touching = (a != b) & (a > 0) & (b > 0)
        pairs.append(np.stack([a[touching], b[touching]], axis=1))
    both = np.concatenate(pairs)
    if len(both) == 0:
        return np.zeros(n)
    both = np.unique(np.sort(both, axis=1), axis=0)
    return np.bincount(both.ravel(), minlength=n + 1)[1:].astype(np.float64)


def measure_cells(
    images: Mapping[str, np.ndarray],
    nuclei_labels: np.ndarray,
    cell_labels: np.ndarray,
    n: int,
    texture: TextureParams,
) -> dict[str, np.ndarray]:
    """Features of cells 1..n, keyed as `feature_names(tuple(images))`, float32 arrays (n,).

    images: channel name (CellProfiler-style, e.g. "DAPI") → intensity image (H, W), already
        illumination-corrected. Cytoplasm = cell pixels outside the nucleus.
    """
    channels = tuple(images)
    cytoplasm_labels = np.where(nuclei_labels > 0, 0, cell_labels)
    moments = {
        "Nuclei": _Moments(nuclei_labels, n),
        "Cells": _Moments(cell_labels, n),
        "Cytoplasm": _Moments(cytoplasm_labels, n),
    }
    label_images = {"Nuclei": nuclei_labels, "Cells": cell_labels}
    out: dict[str, np.ndarray] = {}
    for compartment in ("Nuclei", "Cells"):
        for name, value in shape_features(label_images[compartment], n).items():
            out[f"{compartment}_AreaShape_{name}"] = value
    out["Cytoplasm_AreaShape_Area"] = moments["Cytoplasm"].area
    for compartment in COMPARTMENTS:
        for channel in channels:
            for name, value in moments[compartment].intensity(images[channel]).items():
                out[f"{compartment}_Intensity_{name}_{channel}"] = value
    for compartment in ("Nuclei", "Cells"):
        for channel in channels:
            low, high = texture.limits[channel]
            gray = quantize(images[channel], low, high, texture.levels)
            counts = cooccurrence(
                gray, label_images[compartment], n, texture.distance, texture.levels
            )
            for name, value in haralick(counts).items():
                out[f"{compartment}_Texture_{name}_{channel}"] = value
    for k, a in enumerate(channels):
        for b in channels[k + 1 :]:
            out[f"Cells_Correlation_Correlation_{a}_{b}"] = moments["Cells"].correlation(
                images[a], images[b]
            )
    out["Cells_Neighbors_NumberOfNeighbors_Adjacent"] = _adjacent_counts(cell_labels, n)
    return {name: out[name].astype(np.float32) for name in feature_names(channels)}
