"""Grouped means and exact medians of streamed batches (wide and FLOAT[]) against pandas."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cellstore.profiling.aggregate import aggregate, aggregate_scan, duckdb_scan, parquet_scan
from cellstore.profiling.grouped import Features, grouped_mean, grouped_median

STRATA = ["plate", "well"]
SIZES = [1, 2, 3, 4, 7, 10, 5, 6]  # odd and even counts, a single cell


def planted(contiguous: bool, seed: int = 1, d: int = 5) -> tuple[pa.Table, np.ndarray]:
    """Cells of len(SIZES) wells (a NULL plate among them), float32 features with NaNs.

    Returns the table (wide columns f0.. and the same values as FLOAT[] `emb`) and the
    (n, d) matrix.
    """
    rng = np.random.default_rng(seed)
    plates = np.repeat(np.array(["P1"] * 4 + ["P2"] * 3 + [None], dtype=object), SIZES)
    wells = np.repeat([f"A{i:02d}" for i in range(len(SIZES))], SIZES)
    n = len(wells)
    values = rng.normal(size=(n, d)).astype(np.float32)
    values[:, 1] = rng.integers(0, 3, n)  # ties
    values[rng.random(n) < 0.2, 2] = np.nan  # NaN values in one feature
    order = np.arange(n) if contiguous else rng.permutation(n)
    plates, wells, values = plates[order], wells[order], values[order]
    columns = {"plate": pa.array(plates, pa.string()), "well": pa.array(wells)}
    columns.update({f"f{j}": pa.array(values[:, j]) for j in range(d)})
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
    columns["emb"] = pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1)))
    return pa.table(columns), values


def pandas_oracle(table: pa.Table, operation: str, d: int = 5) -> pd.DataFrame:
    """pandas groupby per (plate, well), NULL plate kept; mean keeps NaN (SQL avg), as today."""
    frame = table.select([*STRATA, *[f"f{j}" for j in range(d)]]).to_pandas()
    names = [f"f{j}" for j in range(d)]
    frame[names] = frame[names].astype(np.float64)
    grouped = frame.groupby(STRATA, dropna=False, sort=True)
    if operation == "mean":
        return grouped.agg(lambda v: v.mean(skipna=False))
    return grouped.median()


def in_batches(table: pa.Table, rows: int):
    def scan(columns):
        yield from table.select(list(columns)).to_batches(rows)

    return scan


@pytest.mark.parametrize("layout", ["wide", "vector"])
@pytest.mark.parametrize("operation", ["mean", "median"])
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("rows", [3, 1000])  # groups spanning batches, or one batch
def test_aggregation_matches_pandas(layout, operation, contiguous, rows):
    table, _ = planted(contiguous)
    features = (
        Features(vector="emb") if layout == "vector" else Features(("f0", "f1", "f2", "f3", "f4"))
    )
    result = aggregate_scan(in_batches(table, rows), STRATA, features, operation)
    expected = pandas_oracle(table, operation)
    keys = [tuple(row.values()) for row in result.groups.to_pylist()]
    assert keys == [tuple(None if pd.isna(v) else v for v in k) for k in expected.index]
    assert keys[-1] == (None, "A07")  # a NULL key is a group of its own, sorted last
    np.testing.assert_array_equal(result.counts, SIZES)
    np.testing.assert_allclose(result.values, expected.to_numpy(), rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("layout", ["wide", "vector"])
def test_median_off_runs_takes_bounded_passes_and_matches_pandas(layout):
    table, _ = planted(contiguous=False, d=7)
    features = (
        Features(vector="emb") if layout == "vector" else Features(tuple(f"f{j}" for j in range(7)))
    )
    scans: list[list[str]] = []

    def scan(columns):
        scans.append(list(columns))
        yield from table.select(list(columns)).to_batches(4)

    result = grouped_median(scan, STRATA, features, values_per_pass=2 * table.num_rows)
    expected = pandas_oracle(table, "median", d=7)
    np.testing.assert_array_equal(result.values, expected.to_numpy())
    # one try as runs, one pass over the keys, then passes of 2 features each
    assert scans[1] == STRATA and len(scans) == 2 + 4
    if layout == "wide":
        assert scans[2] == [*STRATA, "f0", "f1"] and scans[-1] == [*STRATA, "f6"]


def test_median_of_a_source_whose_order_changes_between_scans():
    table, _ = planted(contiguous=False)
    con = duckdb.connect()
    con.register("cells", table)
    shuffled = "(select * from cells order by random())"
    features = [f"f{j}" for j in range(5)]
    result = aggregate(con, shuffled, STRATA, features, "median", columns_per_pass=2)
    expected = pandas_oracle(table, "median")
    np.testing.assert_array_equal(
        result.select(features).to_pandas().to_numpy(), expected.to_numpy()
    )


def test_nulls_are_skipped_and_a_group_without_values_is_null_for_means():
    table = pa.table(
        {
            "well": ["A", "A", "A", "B", "B", "C"],
            "x": pa.array([1.0, None, 4.0, None, None, 2.0]),
            "n": pa.array([1, 2, None, 3, None, 4], pa.int32()),  # integers: as float64
            "v": pa.array([[1.0, 2.0], None, [3.0, 5.0], None, None, [0.5, 0.5]]),
        }
    )
    mean = aggregate_scan(in_batches(table, 2), ["well"], Features(("x", "n")), "mean")
    np.testing.assert_array_equal(mean.values[:, 0][[0, 2]], [2.5, 2.0])
    assert mean.missing.tolist() == [[False, False], [True, False], [False, False]]
    np.testing.assert_array_equal(mean.values[:, 1], [1.5, 3.0, 4.0])
    median = aggregate_scan(in_batches(table, 2), ["well"], Features(("x", "n")), "median")
    np.testing.assert_array_equal(median.values, [[2.5, 1.5], [np.nan, 3.0], [2.0, 4.0]])
    vectors = aggregate_scan(in_batches(table, 2), ["well"], Features(vector="v"), "mean")
    assert vectors.missing[1].all() and vectors.counts.tolist() == [3, 2, 1]
    np.testing.assert_array_equal(vectors.values[[0, 2]], [[2.0, 3.5], [0.5, 0.5]])
    vectors = aggregate_scan(in_batches(table, 2), ["well"], Features(vector="v"), "median")
    np.testing.assert_array_equal(vectors.values, [[2.0, 3.5], [np.nan, np.nan], [0.5, 0.5]])


def test_bad_vectors_and_text_features_are_named():
    uneven = pa.table({"well": ["A", "A"], "v": pa.array([[1.0, 2.0], [1.0]])})
    with pytest.raises(ValueError, match=r"vectors of column 'v' differ in length \(\[1, 2\]\)"):
        grouped_mean(uneven.to_batches(), ["well"], Features(vector="v"))
    holes = pa.table({"well": ["A"], "v": pa.array([[1.0, None]])})
    with pytest.raises(ValueError, match="column 'v' has vectors with NULL elements"):
        grouped_mean(holes.to_batches(), ["well"], Features(vector="v"))
    text = pa.table({"well": ["A"], "name": ["x"]})
    with pytest.raises(ValueError, match="column 'name' is string: aggregation needs numbers"):
        grouped_mean(text.to_batches(), ["well"], Features(("name",)))


@pytest.mark.parametrize("operation", ["mean", "median"])
def test_parquet_and_duckdb_sources_agree(tmp_path, operation):
    table, _ = planted(contiguous=True)
    path = tmp_path / "cells.parquet"
    pq.write_table(table, path, row_group_size=5)  # groups span row groups
    features = [f"f{j}" for j in range(5)]
    from_parquet = aggregate(None, [path], STRATA, features, operation)
    con = duckdb.connect()
    from_duckdb = aggregate(con, f"read_parquet('{path}')", STRATA, features, operation)
    pd.testing.assert_frame_equal(from_parquet.to_pandas(), from_duckdb.to_pandas())
    vectors = aggregate(None, [path], STRATA, operation=operation, vector="emb")
    matrix = np.array(vectors.column("emb").to_pylist(), dtype=np.float64)
    np.testing.assert_array_equal(matrix, from_parquet.select(features).to_pandas().to_numpy())
    expected = pandas_oracle(table, operation)
    np.testing.assert_allclose(matrix, expected.to_numpy(), rtol=1e-12, equal_nan=True)


def test_parquet_scan_without_prefetch_and_an_early_stop(tmp_path):
    table, _ = planted(contiguous=True)
    path = tmp_path / "cells.parquet"
    pq.write_table(table, path, row_group_size=4)
    for prefetch in (True, False):
        batches = list(parquet_scan([path], prefetch=prefetch)(["well", "f0"]))
        assert pa.Table.from_batches(batches).equals(table.select(["well", "f0"]))
    stream = parquet_scan([path])(["well"])
    next(iter(stream))
    stream.close()  # the reading thread stops; nothing hangs


def test_duckdb_scan_streams_the_selected_columns():
    table, _ = planted(contiguous=True)
    con = duckdb.connect()
    con.register("cells", table)
    batches = list(duckdb_scan(con, "cells")(["well", "emb"]))
    assert pa.Table.from_batches(batches).column_names == ["well", "emb"]
