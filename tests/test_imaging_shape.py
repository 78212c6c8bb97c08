"""Vectorised object shape against scikit-image regionprops on random blobs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import regionprops_table

from cellstore.imaging.shape import convex_areas, shape_features


def _blobs(seed: int) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(seed)
    noise = ndi.gaussian_filter(rng.random((120, 160)), 4)
    labels, n = ndi.label(noise > np.percentile(noise, 70))
    return labels.astype(np.int32), n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_regionprops(seed):
    labels, n = _blobs(seed)
    ours = shape_features(labels, n)
    props = regionprops_table(
        labels,
        properties=(
            "area",
            "perimeter",
            "eccentricity",
            "extent",
            "axis_major_length",
            "axis_minor_length",
        ),
    )
    for name, key in [
        ("Area", "area"),
        ("Perimeter", "perimeter"),
        ("Eccentricity", "eccentricity"),
        ("Extent", "extent"),
        ("MajorAxisLength", "axis_major_length"),
        ("MinorAxisLength", "axis_minor_length"),
    ]:
        assert np.allclose(ours[name], props[key], rtol=1e-6, atol=1e-9), name
    has_outline = props["perimeter"] > 0
    assert np.allclose(
        ours["FormFactor"][has_outline],
        4 * np.pi * props["area"][has_outline] / props["perimeter"][has_outline] ** 2,
    )


def test_convex_hull_counts_lattice_pixels():
    labels = np.zeros((20, 20), np.int32)
    labels[2:7, 3:9] = 1  # a 5×6 rectangle: convex, 30 pixels
    labels[10:18, 10] = 2  # a vertical line of 8 pixels (degenerate hull)
    labels[10:18, 14:18] = 3  # an L: 8×4 bounding box with a 5×3 notch cut out
    labels[10:15, 15:18] = 0
    hull = convex_areas(labels, 3)
    assert hull[0] == 30 and hull[1] == 8
    # L hull corners (10,14) (17,14) (17,17) (15,17); pixel centres inside, row by row
    # 10..17: 1, 1, 2, 2, 3, 4, 4, 4 = 21 (17 of them belong to the L).
    assert hull[2] == pytest.approx(21)
    solidity = shape_features(labels, 3)["Solidity"]
    assert solidity.tolist() == pytest.approx([1.0, 1.0, 17 / 21])


def test_missing_labels_get_zeros():
    labels = np.zeros((10, 10), np.int32)
    labels[2:5, 2:5] = 2
    features = shape_features(labels, 3)
    assert all(value[0] == 0 and value[2] == 0 for value in features.values())
    assert features["Area"][1] == 9
