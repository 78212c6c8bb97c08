"""Regrouping an ordered row stream into per-plate batches of whole fields."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellstore.imaging.batches import field_batches


def _rows(fields: list[tuple[str, int]]) -> pa.Table:
    """fields: (plate, n_rows) per field, in order; field k is named f{k:03d}."""
    plates, ids, numbers = [], [], []
    for k, (plate, n) in enumerate(fields):
        for i in range(n):
            plates.append(plate)
            ids.append(f"{plate}_f{k:03d}")
            numbers.append(i)
    return pa.table({"plate": plates, "image_id": ids, "n": numbers})


def _check(table: pa.Table, batches: list[pa.Table], batch_size: int) -> None:
    assert pa.concat_tables(batches).equals(table) if batches else table.num_rows == 0
    seen: set[str] = set()
    for batch in batches:
        assert batch.num_rows > 0
        assert len(set(batch["plate"].to_pylist())) == 1  # one plate per batch
        ids = set(batch["image_id"].to_pylist())
        assert len(ids) <= batch_size
        assert not ids & seen  # a field never spans two batches
        seen |= ids


@settings(max_examples=60, deadline=None)
@given(
    fields=st.lists(
        st.tuples(st.sampled_from(["P1", "P2", "P3"]), st.integers(1, 7)), max_size=25
    ).map(lambda fs: sorted(fs, key=lambda f: f[0])),
    batch_size=st.integers(1, 5),
    read_rows=st.integers(1, 9),
)
def test_batches_hold_whole_fields_of_one_plate(fields, batch_size, read_rows):
    table = _rows(fields)
    batches = list(field_batches(table.to_batches(max_chunksize=read_rows), batch_size))
    _check(table, batches, batch_size)


def test_full_batches_are_cut_at_batch_size_and_plate_change():
    table = _rows([("A", 2)] * 5 + [("B", 1)] * 2)
    batches = list(field_batches(table.to_batches(max_chunksize=3), batch_size=2))
    sizes = [len(set(b["image_id"].to_pylist())) for b in batches]
    assert sizes == [2, 2, 1, 2]


def test_unsorted_input_is_an_error():
    table = pa.table({"plate": ["A", "A", "A"], "image_id": ["x", "y", "x"]})
    with pytest.raises(ValueError, match="not sorted"):
        list(field_batches(table.to_batches(max_chunksize=1), batch_size=1))


def test_compact_batches_pickle_without_their_parent_and_keep_values():
    import pickle

    from cellstore.imaging.batches import compact

    big = pa.table(
        {
            "image_id": [f"f{i // 10:04d}" for i in range(20000)],
            "path_dapi": [f"/data/plate/f{i // 10:04d}_w1.tif" for i in range(20000)],
        }
    )
    piece = big.slice(100, 50)
    small = compact(piece)
    assert len(pickle.dumps(small)) < len(pickle.dumps(piece)) / 20
    assert small["path_dapi"].to_pylist() == piece["path_dapi"].to_pylist()
    assert small["image_id"].to_pylist() == piece["image_id"].to_pylist()
