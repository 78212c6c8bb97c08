"""Haralick texture features of all labelled objects at once (vectorised co-occurrence)."""

from __future__ import annotations

import numpy as np

# Haralick et al. 1973 features, as CellProfiler's MeasureTexture names them.
HARALICK = (
    "AngularSecondMoment",
    "Contrast",
    "Correlation",
    "Variance",
    "InverseDifferenceMoment",
    "Entropy",
)

# Offsets (dy, dx) of the 4 directions averaged over, in scikit-image's order and sign
# convention (graycomatrix angles 0, π/4, π/2, 3π/4); matrices are symmetric, so (dy, dx)
# and (-dy, -dx) count the same pairs.
_DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1))


def quantize(image: np.ndarray, low: float, high: float, levels: int) -> np.ndarray:
    """Map [low, high] linearly onto gray levels 0 .. levels - 1 (clipped), uint8."""
    if not 2 <= levels <= 256:
        raise ValueError(f"texture: levels must be in 2..256, got {levels}")
    span = max(high - low, 1e-12)
    scaled = (image.astype(np.float32) - low) * (levels / span)
    return np.clip(scaled, 0, levels - 1).astype(np.uint8)


def cooccurrence(
    levels_image: np.ndarray, labels: np.ndarray, n_labels: int, distance: int, levels: int
) -> np.ndarray:
    """Symmetric gray-level co-occurrence counts per object and direction.

    Only pixel pairs with both pixels inside the same object count. Returns
    (n_labels, 4, levels, levels) float64 counts; object k has label k + 1.
    Works on the labelled pixels only (objects cover a fraction of the field).
    """
    height, width = labels.shape
    flat_labels, flat_gray = labels.ravel(), levels_image.ravel()
    inside = np.flatnonzero(flat_labels)
    rows, cols = np.divmod(inside, width)
    owner = flat_labels[inside].astype(np.int64)
    gray = flat_gray[inside].astype(np.int64)
    counts = np.zeros((n_labels + 1, len(_DIRECTIONS), levels * levels), np.float64)
    for d, (dy, dx) in enumerate(_DIRECTIONS):
        oy, ox = dy * distance, dx * distance
        # Partner q = p + (oy, ox) must stay inside the image and in the same object.
        valid = (rows + oy >= 0) & (rows + oy < height) & (cols + ox >= 0) & (cols + ox < width)
        partner = inside[valid] + oy * width + ox
        same = flat_labels[partner] == owner[valid]
        who = owner[valid][same]
        gp = gray[valid][same]
        gq = flat_gray[partner[same]].astype(np.int64)
        base = who * levels * levels
        # Symmetric matrix: count (gp, gq) and (gq, gp).
        index = np.concatenate([base + gp * levels + gq, base + gq * levels + gp])
        counts[:, d] = np.bincount(index, minlength=(n_labels + 1) * levels * levels).reshape(
            n_labels + 1, levels * levels
        )
    return counts[1:].reshape(n_labels, len(_DIRECTIONS), levels, levels)


def haralick(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Haralick features from (..., L, L) co-occurrence counts, averaged over directions.

    Input (N, D, L, L); output {name: (N,) float64}. Directions without any pixel pair are
    left out of the average; an object with no pair at all (thinner than the distance) gets 0
    for every feature, and a flat object (zero variance) gets Correlation 0, never NaN.
    """
    levels = counts.shape[-1]
    totals = counts.sum(axis=(-2, -1), keepdims=True)
    p = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)  # (N, D, L, L)
    i = np.arange(levels, dtype=np.float64)[:, None]
    j = np.arange(levels, dtype=np.float64)[None, :]
    mean_i = (p * i).sum(axis=(-2, -1))  # (N, D); symmetric: mean_j == mean_i
    var_i = (p * (i - mean_i[..., None, None]) ** 2).sum(axis=(-2, -1))
    covariance = (p * (i - mean_i[..., None, None]) * (j - mean_i[..., None, None])).sum(
        axis=(-2, -1)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        correlation = np.where(var_i > 1e-12, covariance / var_i, 0.0)
        log_p = np.where(p > 0, np.log2(np.where(p > 0, p, 1.0)), 0.0)
    features = {
        "AngularSecondMoment": (p * p).sum(axis=(-2, -1)),
        "Contrast": (p * (i - j) ** 2).sum(axis=(-2, -1)),
        "Correlation": correlation,
        "Variance": var_i,
        "InverseDifferenceMoment": (p / (1.0 + (i - j) ** 2)).sum(axis=(-2, -1)),
        "Entropy": -(p * log_p).sum(axis=(-2, -1)),
    }
    has_pairs = totals[..., 0, 0] > 0  # (N, D)
    n_valid = has_pairs.sum(axis=1)
    out: dict[str, np.ndarray] = {}
    for name, value in features.items():
        summed = np.where(has_pairs, value, 0.0).sum(axis=1)
        out[name] = np.divide(summed, n_valid, out=np.zeros(len(summed)), where=n_valid > 0)
    return out
