"""Illumination functions: mean image, median filter, scale 1, and correction of shading."""

from __future__ import annotations

import numpy as np
import pytest

from cellstore.imaging.arrays import block_mean, from_bytes, to_bytes
from cellstore.imaging.illumination import (
    MeanImage,
    correct,
    full_resolution,
    illumination_function,
)


def _shading(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return 1.0 - 0.5 * (((xx - width / 2) / width) ** 2 + ((yy - height / 2) / height) ** 2)


def test_block_mean_matches_reshape_mean():
    image = np.random.default_rng(0).integers(0, 1000, (18, 25)).astype(np.uint16)
    expected = image[:16, :24].reshape(4, 4, 6, 4).mean(axis=(1, 3))
    assert np.allclose(block_mean(image, 4), expected)
    with pytest.raises(ValueError, match="factor"):
        block_mean(image, 0)


def test_mean_image_accumulates_and_merges():
    a, b = MeanImage(), MeanImage()
    a.add(np.full((8, 8), 10, np.uint16), 4)
    b.add(np.full((8, 8), 30, np.uint16), 4)
    b.add(np.full((8, 8), 50, np.uint16), 4)
    a.merge(b)
    assert a.count == 3 and np.allclose(a.mean(), 30.0)
    with pytest.raises(ValueError, match="downscales"):
        a.add(np.zeros((4, 4), np.uint16), 4)
    with pytest.raises(ValueError, match="no image"):
        MeanImage().mean()


def test_function_flattens_planted_shading_of_cell_fields():
    rng = np.random.default_rng(1)
    shading = _shading(128, 160)
    mean_image = MeanImage()
    fields = []
    for _ in range(20):
        cells = rng.random((128, 160)) < 0.02  # bright specks, different in every field
        field = (500 + 3000 * cells) * shading + rng.normal(0, 10, shading.shape)
        fields.append(field.astype(np.uint16))
        mean_image.add(fields[-1], 4)
    function = illumination_function(mean_image.mean(), median_size=5)
    assert function.mean() == pytest.approx(1.0, abs=1e-5)
    full = full_resolution(*_stored(function), (128, 160))
    background = np.median([correct(f, full) for f in fields], axis=0)
    raw_background = np.median(fields, axis=0)
    cv = lambda a: a.std() / a.mean()  # noqa: E731
    assert cv(raw_background) > 0.05
    assert cv(background) < cv(raw_background) / 3


def _stored(function: np.ndarray) -> tuple[bytes, tuple[int, int], str]:
    buffer, shape, dtype = to_bytes(function)
    assert np.array_equal(from_bytes(buffer, shape, dtype), function)
    return buffer, tuple(shape), dtype


def test_bytes_of_the_wrong_size_are_an_error():
    with pytest.raises(ValueError, match="got 3 bytes, expected 16"):
        from_bytes(b"123", (2, 2), "float32")
