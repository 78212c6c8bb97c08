"""Crop boxes, the border rule, uint8 normalisation and the crop batch reader."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from cellstore.imaging.crops import (
    binary_column,
    crop_boxes,
    gain_offset,
    read_crops,
    to_uint8,
)


def _stack(height: int = 40, width: int = 50) -> np.ndarray:
    """(2, H, W) uint16 whose pixel value encodes its position: 100 * row + col (+ 1 on c1)."""
    rows, cols = np.mgrid[0:height, 0:width]
    base = (100 * rows + cols).astype(np.uint16)
    return np.stack([base, base + 1])


def test_box_is_centred_on_the_rounded_nucleus_centre():
    crops, is_border = crop_boxes(_stack(), np.array([20.4]), np.array([15.6]), box=8)
    assert crops.shape == (1, 2, 8, 8)
    assert crops[0, 0, 4, 4] == 100 * 16 + 20  # centre pixel (row 16, col 20) at box // 2
    assert crops[0, 1, 0, 0] == 100 * 12 + 16 + 1
    assert not is_border[0]


def test_pad_rule_keeps_the_box_centred_and_fills_outside_with_zero():
    crops, is_border = crop_boxes(_stack(), np.array([1.0]), np.array([2.0]), box=8, border="pad")
    assert is_border[0]
    assert (crops[0, :, :2, :] == 0).all()  # rows -2, -1 lie above the image
    assert (crops[0, :, :, :3] == 0).all()  # cols -3 .. -1 lie left of it
    assert crops[0, 0, 4, 4] == 100 * 2 + 1


def test_shift_rule_moves_the_box_inside_the_image():
    stack = _stack()
    crops, is_border = crop_boxes(stack, np.array([48.0]), np.array([39.0]), box=8, border="shift")
    assert is_border[0]
    assert (crops[0] == stack[:, 32:40, 42:50]).all()


def test_unknown_border_rule_and_oversized_shift_box_are_errors():
    with pytest.raises(ValueError, match="border must be one of"):
        crop_boxes(_stack(), np.array([5.0]), np.array([5.0]), box=4, border="wrap")
    with pytest.raises(ValueError, match="does not fit"):
        crop_boxes(_stack(), np.array([5.0]), np.array([5.0]), box=64, border="shift")


def test_uint8_mapping_corrects_illumination_and_clips():
    function = np.array([[1.0, 2.0], [0.5, 1.0]], np.float32)
    raw = np.array([[100, 400], [50, 300]], np.uint16)
    gain, offset = gain_offset(function, low=50.0, high=150.0)
    out = to_uint8(raw, gain, offset)
    # Corrected: 100, 200, 100, 300 → (c - 50) / 100 * 255, clipped to [0, 255].
    assert out.dtype == np.uint8
    assert out.tolist() == [[128, 255], [128, 255]]
    assert to_uint8(np.array([[10]], np.uint16), gain[:1, :1], offset)[0, 0] == 0


def _crops_table(batch: np.ndarray) -> pa.Table:
    n = len(batch)
    return pa.table(
        {
            "cell_id": [f"c{i}" for i in range(n)],
            "crop": binary_column(batch),
            "shape": pa.array([list(batch.shape[1:])] * n, pa.list_(pa.int32())),
            "dtype": [batch.dtype.name] * n,
        }
    )


def test_read_crops_round_trips_arrow_duckdb_and_torch():
    batch = np.random.default_rng(0).integers(0, 255, (5, 3, 6, 6), dtype=np.uint8)
    table = _crops_table(batch)
    assert np.array_equal(read_crops(table), batch)
    con = duckdb.connect()
    con.register("crops", table)
    relation = con.sql("select * from crops where cell_id in ('c1', 'c3') order by cell_id")
    assert np.array_equal(read_crops(relation), batch[[1, 3]])
    tensor = read_crops(table.slice(2), as_torch=True, dtype="float32")
    assert tuple(tensor.shape) == (3, 3, 6, 6)
    assert np.array_equal(tensor.numpy(), batch[2:].astype(np.float32))


def test_read_crops_rejects_mixed_shapes_and_wrong_sizes():
    small = _crops_table(np.zeros((2, 3, 4, 4), np.uint8))
    large = _crops_table(np.zeros((1, 3, 6, 6), np.uint8))
    with pytest.raises(ValueError, match="mix shapes"):
        read_crops(pa.concat_tables([small, large]))
    lying = small.set_column(2, "shape", pa.array([[3, 5, 5]] * 2, pa.list_(pa.int32())))
    with pytest.raises(ValueError, match="row 0 holds 48 bytes, expected 75"):
        read_crops(lying)
    with pytest.raises(ValueError, match="missing column"):
        read_crops(small.drop_columns(["dtype"]))
    with pytest.raises(ValueError, match="no rows"):
        read_crops(small.slice(0, 0))
