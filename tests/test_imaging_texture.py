"""Vectorised Haralick texture against scikit-image's graycomatrix / graycoprops."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.feature import graycomatrix, graycoprops

from cellstore.imaging.texture import cooccurrence, haralick, quantize

ANGLES = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]


def test_single_object_matches_skimage():
    gray = np.random.default_rng(1).integers(0, 8, (30, 40)).astype(np.uint8)
    labels = np.ones(gray.shape, np.int32)
    counts = cooccurrence(gray, labels, 1, distance=1, levels=8)
    oracle = graycomatrix(gray, [1], ANGLES, levels=8, symmetric=True)  # (L, L, 1, 4)
    assert np.array_equal(counts[0], np.moveaxis(oracle[:, :, 0, :], -1, 0))
    ours = haralick(counts)
    normed = graycomatrix(gray, [1], ANGLES, levels=8, symmetric=True, normed=True)
    for name, prop in [
        ("AngularSecondMoment", "ASM"),
        ("Contrast", "contrast"),
        ("Correlation", "correlation"),
        ("InverseDifferenceMoment", "homogeneity"),
        ("Variance", "variance"),
    ]:
        assert ours[name][0] == pytest.approx(graycoprops(normed, prop).mean(), rel=1e-9)
    p = normed[:, :, 0, :]
    entropy = -(p * np.log2(np.where(p > 0, p, 1))).sum(axis=(0, 1)).mean()
    assert ours["Entropy"][0] == pytest.approx(entropy, rel=1e-9)


def test_longer_distances_step_d_pixels_along_each_axis():
    gray = np.random.default_rng(2).integers(0, 4, (20, 24)).astype(np.uint8)
    counts = cooccurrence(gray, np.ones(gray.shape, np.int32), 1, distance=3, levels=4)[0]
    # Axis-aligned directions agree with skimage; diagonals step (3, ±3) as in CellProfiler
    # (skimage rounds 3·cos 45° to 2 instead).
    oracle = graycomatrix(gray, [3], [0, np.pi / 2], levels=4, symmetric=True)[:, :, 0, :]
    assert np.array_equal(counts[0], oracle[:, :, 0])
    assert np.array_equal(counts[2], oracle[:, :, 1])
    assert counts[1].sum() == 2 * (20 - 3) * (24 - 3)


def test_objects_do_not_mix_and_tiny_objects_get_zeros():
    gray = np.zeros((10, 20), np.uint8)
    gray[:, 10:] = np.tile([0, 3], 50).reshape(10, 10)  # striped right half
    labels = np.zeros((10, 20), np.int32)
    labels[:, :10] = 1  # flat left object
    labels[:, 10:] = 2
    labels[0, 0] = 3  # a 1-pixel object: no pair at any distance
    features = haralick(cooccurrence(gray, labels, 3, distance=1, levels=4))
    assert features["Contrast"][0] == 0.0  # flat: never sees the stripes next door
    assert features["Contrast"][1] > 0.0
    assert features["Correlation"][0] == 0.0  # zero variance → 0, not NaN
    assert all(value[2] == 0.0 for value in features.values())
    assert all(np.isfinite(value).all() for value in features.values())


def test_quantize_spreads_limits_over_levels():
    levels = quantize(np.array([0.0, 0.49, 0.5, 1.0, 2.0]), 0.0, 1.0, 4)
    assert levels.tolist() == [0, 1, 2, 3, 3]
    with pytest.raises(ValueError, match="levels"):
        quantize(np.zeros(3), 0, 1, 300)
