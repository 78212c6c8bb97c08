"""Reading channel TIFFs and rejecting unusable fields with a reason."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cellstore.imaging import fieldio
from cellstore.imaging.fieldio import FieldRejected, QualityLimits, read_field


def _write_field(folder, images: dict[str, np.ndarray]) -> dict[str, str]:
    paths = {}
    for name, image in images.items():
        path = folder / f"{name}.tif"
        tifffile.imwrite(path, image)
        paths[name] = str(path)
    return paths


def _good(shape=(32, 40)) -> np.ndarray:
    return np.random.default_rng(0).integers(100, 3000, shape).astype(np.uint16)


def _reason(tmp_path, **overrides) -> str:
    images = {name: _good() for name in fieldio.CHANNELS} | overrides
    with pytest.raises(FieldRejected) as caught:
        read_field(_write_field(tmp_path, images))
    return caught.value.reason


def test_a_good_field_is_read_in_channel_order(tmp_path):
    images = {name: _good() + i for i, name in enumerate(fieldio.CHANNELS)}
    out = read_field(_write_field(tmp_path, images))
    assert list(out) == list(fieldio.CHANNELS)
    assert all(np.array_equal(out[name], images[name]) for name in fieldio.CHANNELS)


def test_all_zero_channel_is_blank(tmp_path):
    assert _reason(tmp_path, actin=np.zeros((32, 40), np.uint16)) == fieldio.BLANK


def test_saturated_channel_is_rejected_above_the_limit_only(tmp_path):
    image = _good()
    image[:2] = 65535  # 6.25% of pixels at the maximum
    assert _reason(tmp_path, dapi=image) == fieldio.SATURATED
    paths = _write_field(tmp_path, {name: image for name in fieldio.CHANNELS})
    assert read_field(paths, QualityLimits(max_saturated_fraction=0.1))["dapi"].max() == 65535


def test_nan_pixels_are_not_finite(tmp_path):
    image = _good().astype(np.float32)
    image[3, 4] = np.nan
    assert _reason(tmp_path, tubulin=image) == fieldio.NOT_FINITE


def test_garbage_file_is_unreadable_and_names_the_file(tmp_path):
    paths = _write_field(tmp_path, {name: _good() for name in fieldio.CHANNELS})
    with open(paths["tubulin"], "wb") as handle:
        handle.write(b"not a tiff at all")
    with pytest.raises(FieldRejected) as caught:
        read_field(paths)
    assert caught.value.reason == fieldio.UNREADABLE
    assert "tubulin.tif" in caught.value.detail
    missing = paths | {"dapi": str(tmp_path / "missing.tif")}
    with pytest.raises(FieldRejected, match="unreadable"):
        read_field(missing)


def test_channels_of_different_shapes_are_a_mismatch(tmp_path):
    assert _reason(tmp_path, actin=_good((16, 40))) == fieldio.SHAPE_MISMATCH
