"""Object size and shape of every label at once (scikit-image regionprops definitions)."""

from __future__ import annotations

import numpy as np

# scikit-image's `perimeter` (4-neighbourhood): a border pixel's code is 1 + 2 × (border
# 4-neighbours of the same object) + 10 × (border diagonal neighbours); codes map to lengths.
_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + np.sqrt(2)) / 2


def _per_label(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(owner, weights=values, minlength=n + 1)[1:]


def _border_pixels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Flat indices (in the 1-px zero-padded label image), labels and the padded flat image
    of every object pixel with a 4-neighbour outside its object (image edge included)."""
    padded = np.pad(labels, 1)
    stride = padded.shape[1]
    flat = padded.ravel()
    index = np.flatnonzero(flat)
    owner = flat[index]
    interior = np.ones(len(index), bool)
    for step in (1, -1, stride, -stride):
        interior &= flat[index + step] == owner
    return index[~interior], owner[~interior], flat, stride


def perimeters(labels: np.ndarray, n: int) -> np.ndarray:
    """skimage.measure.perimeter(object, 4) of labels 1..n, from one pass over the borders."""
    index, owner, flat, stride = _border_pixels(labels)
    is_border = np.zeros(flat.size, bool)
    is_border[index] = True
    code = np.ones(len(index), np.int64)
    for step, weight in ((1, 2), (-1, 2), (stride, 2), (-stride, 2)):
        code += weight * (is_border[index + step] & (flat[index + step] == owner))
    for step in (stride + 1, stride - 1, -stride + 1, -stride - 1):
        code += 10 * (is_border[index + step] & (flat[index + step] == owner))
    return _per_label(_PERIMETER_WEIGHTS[code], owner.astype(np.int64), n)


def convex_areas(labels: np.ndarray, n: int) -> np.ndarray:
    """Pixels inside the convex hull of each object's pixel centres (its digital convex hull).

    Counted exactly with Pick's theorem, A + B / 2 + 1 (A: hull polygon area, B: lattice
    points on its outline), so a digitally convex object has solidity 1. scikit-image hulls
    the pixel corners instead, which adds a rim (round nuclei get ~0.93-0.97 there).
    """
    from scipy.spatial import ConvexHull, QhullError

    index, owner, _, stride = _border_pixels(labels)
    order = np.argsort(owner, kind="stable")
    owner, index = owner[order], index[order]
    rows, cols = np.divmod(index, stride)  # padded coordinates: the offset cancels
    areas = np.zeros(n)
    starts = np.searchsorted(owner, np.arange(1, n + 2))
    for label in range(1, n + 1):
        begin, end = starts[label - 1], starts[label]
        if begin == end:
            continue
        points = np.stack([rows[begin:end], cols[begin:end]], axis=1)
        try:
            hull = ConvexHull(points)
        except QhullError:  # one pixel, or pixels on one line: the hull is the pixels
            areas[label - 1] = end - begin
            continue
        corners = points[hull.vertices]  # counter-clockwise
        steps = np.abs(np.diff(np.vstack([corners, corners[:1]]), axis=0))
        boundary = np.gcd(steps[:, 0], steps[:, 1]).sum()
        areas[label - 1] = hull.volume + boundary / 2 + 1  # 2-D "volume" is the area
    return areas


def shape_features(labels: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Area, Perimeter, FormFactor, Eccentricity, Solidity, Extent, Major/MinorAxisLength.

    Same definitions as scikit-image's regionprops (inertia tensor of the pixel centres,
    4-neighbourhood perimeter) computed for all labels 1..n together; missing labels get 0.
    """
    from scipy import ndimage as ndi

    inside = np.flatnonzero(labels)
    owner = labels.ravel()[inside].astype(np.int64)
    rows, cols = np.divmod(inside, labels.shape[1])
    rows, cols = rows.astype(np.float64), cols.astype(np.float64)
    area = np.bincount(owner, minlength=n + 1)[1:].astype(np.float64)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.divide(_per_label(values, owner, n), area, out=np.zeros(n), where=area > 0)

    mr, mc = mean(rows), mean(cols)
    var_r = mean(rows * rows) - mr**2  # central moments / area
    var_c = mean(cols * cols) - mc**2
    cov = mean(rows * cols) - mr * mc
    # Eigenvalues of the inertia tensor [[var_c, -cov], [-cov, var_r]].
    half_trace, root = (var_r + var_c) / 2, np.sqrt(((var_r - var_c) / 2) ** 2 + cov**2)
    major, minor = np.maximum(half_trace + root, 0), np.maximum(half_trace - root, 0)
    eccentricity = np.sqrt(1 - np.divide(minor, major, out=np.ones(n), where=major > 0))
    boxes = ndi.find_objects(labels, max_label=n)
    box_area = np.array(
        [0 if b is None else (b[0].stop - b[0].start) * (b[1].stop - b[1].start) for b in boxes],
        np.float64,
    )
    perimeter = perimeters(labels, n)
    hull = convex_areas(labels, n)
    return {
        "Area": area,
        "Perimeter": perimeter,
        "FormFactor": np.divide(
            4 * np.pi * area, perimeter**2, out=np.zeros(n), where=perimeter > 0
        ),
        "Eccentricity": eccentricity,
        "Solidity": np.divide(area, hull, out=np.zeros(n), where=hull > 0),
        "Extent": np.divide(area, box_area, out=np.zeros(n), where=box_area > 0),
        "MajorAxisLength": 4 * np.sqrt(major),
        "MinorAxisLength": 4 * np.sqrt(minor),
    }
