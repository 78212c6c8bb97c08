"""CropStream: exact decoding, whole-table shuffle in bounded memory, determinism, DDP shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from cellstore.ssl.data import CropFile, CropStream, prefetch, write_crop_file

SHAPE = (3, 6, 6)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster here and immune to busy neighbours."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tagged_crops(first: int, n: int, seed: int = 0) -> np.ndarray:
    """Random crops whose first two bytes hold the row's global index (base 256)."""
    crops = np.random.default_rng(seed + first).integers(0, 256, (n, *SHAPE), dtype=np.uint8)
    ids = np.arange(first, first + n)
    crops[:, 0, 0, 0] = ids // 256
    crops[:, 0, 0, 1] = ids % 256
    return crops


def ids_of(batch: torch.Tensor) -> np.ndarray:
    b = batch.numpy().astype(np.int64)
    return b[:, 0, 0, 0] * 256 + b[:, 0, 0, 1]


@pytest.fixture
def table(tmp_path: Path) -> list[CropFile]:
    """Three files (70, 45, 85 rows) in row groups of 16: 200 crops, ids 0..199."""
    files, first = [], 0
    for i, n in enumerate([70, 45, 85]):
        files.append(
            write_crop_file(
                tmp_path / f"part{i}.parquet", tagged_crops(first, n), row_group_size=16
            )
        )
        first += n
    return files


def naive_decode(files: list[CropFile]) -> np.ndarray:
    """Row by row: bytes → np.frombuffer → reshape(shape)."""
    rows = []
    for f in files:
        for record in pq.read_table(f.path).to_pylist():
            rows.append(np.frombuffer(record["crop"], record["dtype"]).reshape(record["shape"]))
    return np.stack(rows)


def all_ids(stream: CropStream, epoch: int) -> np.ndarray:
    return np.concatenate([ids_of(b) for b in stream.epoch(epoch)])


def test_batches_reproduce_the_crops_written(table):
    stream = CropStream(table, batch_size=32, shuffle=False)
    batches = list(stream.epoch(0))
    assert all(b.dtype == torch.uint8 and b.shape[1:] == SHAPE for b in batches)
    assert [len(b) for b in batches] == [32] * 6 + [8]
    np.testing.assert_array_equal(torch.cat(batches).numpy(), naive_decode(table))


def test_shuffled_crops_are_the_written_crops(table):
    stream = CropStream(table, batch_size=32, shuffle=True, buffer_rows=64)
    got = torch.cat(list(stream.epoch(0))).numpy()
    expected = naive_decode(table)
    np.testing.assert_array_equal(got, expected[ids_of(torch.from_numpy(got))])


def test_shuffle_covers_every_row_exactly_once_per_epoch(table):
    stream = CropStream(table, batch_size=20, shuffle=True, buffer_rows=40, seed=5)
    for epoch in range(3):
        ids = all_ids(stream, epoch)
        assert sorted(ids) == list(range(200))


def test_shuffle_mixes_across_files_and_row_groups(table):
    first = next(iter(CropStream(table, batch_size=20, buffer_rows=40, seed=1).epoch(0)))
    row_groups = set(ids_of(first) // 16)
    assert len(row_groups) >= 2
    assert not np.array_equal(np.sort(ids_of(first)), np.arange(20))


def test_order_is_deterministic_per_seed_and_epoch(table):
    def stream(seed):
        return CropStream(table, batch_size=20, buffer_rows=40, seed=seed)

    np.testing.assert_array_equal(all_ids(stream(3), 2), all_ids(stream(3), 2))
    assert not np.array_equal(all_ids(stream(3), 0), all_ids(stream(3), 1))
    assert not np.array_equal(all_ids(stream(3), 0), all_ids(stream(4), 0))


def test_buffer_never_holds_more_than_the_setting(table):
    stream = CropStream(table, batch_size=10, buffer_rows=25)
    assert stream.read_rows == 6  # slices of buffer_rows // 4
    for epoch in range(2):
        assert len(all_ids(stream, epoch)) == 200
    assert 0 < stream.peak_buffered_rows <= 25


def test_buffer_bytes_sets_the_capacity(table):
    crop_bytes = int(np.prod(SHAPE))
    stream = CropStream(table, batch_size=10, buffer_bytes=30 * crop_bytes)
    assert stream.buffer_rows == 30
    all_ids(stream, 0)
    assert stream.peak_buffered_rows <= 30


def test_a_buffer_smaller_than_two_batches_is_an_error(table):
    with pytest.raises(ValueError, match="shuffle buffer holds 30 crops"):
        CropStream(table, batch_size=16, buffer_rows=30)


@pytest.mark.parametrize("shuffle", [True, False])
def test_ddp_shards_are_disjoint_complete_and_equal_in_steps(table, shuffle):
    world = 4  # 200 rows: 50 per rank
    streams = [
        CropStream(table, batch_size=16, shuffle=shuffle, buffer_rows=32, rank=r, world_size=world)
        for r in range(world)
    ]
    shards = [all_ids(s, 1) for s in streams]
    assert {s.steps_per_epoch() for s in streams} == {4}
    assert [len(list(s.epoch(1))) for s in streams] == [4] * world
    assert sorted(np.concatenate(shards)) == list(range(200))


def test_ddp_shards_skip_fewer_rows_than_ranks(table):
    world = 3  # 200 = 3 × 66 + 2
    streams = [
        CropStream(table, batch_size=16, buffer_rows=32, rank=r, world_size=3) for r in range(3)
    ]
    shards = [all_ids(s, 0) for s in streams]
    union = np.concatenate(shards)
    assert len(union) == len(set(union)) == 198
    assert {len(s) for s in shards} == {66}
    assert len(set(range(200)) - set(union)) < world


def test_drop_last_gives_full_batches_only(table):
    stream = CropStream(table, batch_size=32, buffer_rows=64, drop_last=True)
    assert stream.steps_per_epoch() == 6
    assert [len(b) for b in stream.epoch(0)] == [32] * 6


def test_max_cells_is_a_fixed_random_subset(table):
    def ids(seed, epoch):
        return set(
            all_ids(
                CropStream(table, batch_size=10, buffer_rows=20, seed=seed, max_cells=50), epoch
            )
        )

    subset = ids(7, 0)
    assert len(subset) == 50
    assert ids(7, 3) == subset  # the same cells every epoch
    assert ids(8, 0) != subset
    assert max(subset) > 100  # drawn from the whole table, not its head


def test_no_files_is_an_error():
    with pytest.raises(ValueError, match="no Parquet files"):
        CropStream([], batch_size=4)


def test_zero_rows_is_an_error(tmp_path):
    empty = write_crop_file(tmp_path / "empty.parquet", np.zeros((0, *SHAPE), np.uint8))
    with pytest.raises(ValueError, match="zero rows"):
        CropStream([empty], batch_size=4)


def test_missing_file_and_wrong_row_count_are_errors(table, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        CropStream([str(tmp_path / "nope.parquet")], batch_size=4)
    with pytest.raises(ValueError, match="holds 70 rows, the catalog says 71"):
        CropStream([(table[0].path, 71)], batch_size=4)


def test_mixed_shapes_are_an_error_naming_the_row(tmp_path, table):
    odd = pq.read_table(table[1].path)
    shapes = odd["shape"].to_pylist()
    shapes[37] = [3, 3, 12]  # same byte count, another shape
    odd = odd.set_column(odd.schema.get_field_index("shape"), "shape", pa.array(shapes))
    pq.write_table(odd, table[1].path, row_group_size=16)
    stream = CropStream(table, batch_size=8, shuffle=False)
    with pytest.raises(ValueError, match=r"part1.parquet row 37 has shape \[3, 3, 12\]"):
        list(stream.epoch(0))


def test_prefetch_yields_the_same_items_and_reraises():
    assert list(prefetch(iter(range(10)), depth=2)) == list(range(10))

    def broken():
        yield 1
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        list(prefetch(broken()))


def test_a_crop_of_another_dtype_is_an_error_naming_the_row(table):
    odd = pq.read_table(table[2].path)
    dtypes = odd["dtype"].to_pylist()
    dtypes[5] = "uint16"
    odd = odd.set_column(odd.schema.get_field_index("dtype"), "dtype", pa.array(dtypes))
    pq.write_table(odd, table[2].path, row_group_size=16)
    with pytest.raises(ValueError, match=r"part2.parquet row 5 has dtype 'uint16'"):
        list(CropStream(table, batch_size=8, shuffle=False).epoch(0))
