"""Aggregate per-cell features to per-group (well) profiles: DuckDB SQL means, numpy medians."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import duckdb
import numpy as np
import pyarrow as pa

from cellstore.profiling.median import block_dtype, fill_block, grouped_median, layout_groups

OPERATIONS = {"mean": "avg", "median": "median"}
MEDIAN_VALUES_PER_PASS = 32 * 2**20  # values held per median pass: 128 MiB as float32
ROWS_PER_BATCH = 2**17  # rows streamed from DuckDB at a time


def quote(identifier: str) -> str:
    """A SQL identifier in double quotes (embedded quotes doubled)."""
    return '"' + identifier.replace('"', '""') + '"'


def aggregate_sql(
    source: str, strata: Sequence[str], features: Sequence[str], operation: str = "mean"
) -> str:
    """One SELECT aggregating `features` over rows of `source` per `strata`.

    source: any DuckDB table expression (a table name, `read_parquet('cells.parquet')`).
    The result has the strata, `n_cells`, then one column per feature, sorted by strata.
    """
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}: expected one of {list(OPERATIONS)}")
    if not strata:
        raise ValueError("aggregate needs at least one strata column")
    function = OPERATIONS[operation]
    keys = ", ".join(quote(s) for s in strata)
    values = ", ".join(f"{function}({quote(f)}) as {quote(f)}" for f in features)
    return (
        f"select {keys}, count(*) as n_cells{', ' + values if values else ''} "
        f"from {source} group by {keys} order by {keys}"
    )


def aggregate(
    con: duckdb.DuckDBPyConnection,
    source: str,
    strata: Sequence[str],
    features: Sequence[str],
    operation: str = "mean",
    *,
    columns_per_pass: int | None = None,
) -> pa.Table:
    """Aggregate per strata, `columns_per_pass` feature columns per scan of `source`.

    The result has the strata, `n_cells`, then one column per feature (float64 for a
    median), sorted by strata (nulls last). Means run in DuckDB SQL, all columns in one scan
    unless `columns_per_pass` is set. Medians are exact, as pandas' `groupby().median()`
    (NaN and NULL skipped, an even count averages the two middle values), and use numpy
    partition on column slices: a median holds every value of a column until its group is
    done, so passes bound memory to rows × columns_per_pass values (by default about
    `MEDIAN_VALUES_PER_PASS`); a columnar source such as Parquet reads only the slice.
    """
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}: expected one of {list(OPERATIONS)}")
    if not strata:
        raise ValueError("aggregate needs at least one strata column")
    features = list(features)
    if operation == "median" and features:
        return _median_by_partition(con, source, list(strata), features, columns_per_pass)
    step = columns_per_pass or max(len(features), 1)
    result: pa.Table | None = None
    for start in range(0, max(len(features), 1), step):
        batch = features[start : start + step]
        part = con.sql(aggregate_sql(source, strata, batch, operation)).to_arrow_table()
        if result is None:
            result = part
            continue
        for name in batch:
            result = result.append_column(name, part.column(name))
    assert result is not None
    return result


class _RowOrderChanged(Exception):
    """A scan returned rows in another order (or number) than the first scan."""


def _median_by_partition(
    con: duckdb.DuckDBPyConnection,
    source: str,
    strata: list[str],
    features: list[str],
    columns_per_pass: int | None,
) -> pa.Table:
    """Exact medians: group the rows once, then per column slice one scan + numpy partition.

    Each later scan streams a hash of the strata beside the values; rows are placed by the
    first scan's grouping while those hashes match it row for row, and a slice whose rows
    came back in another order (a source without a stable order) is grouped by its own keys.
    """
    keys_sql = ", ".join(quote(s) for s in strata)
    first = con.sql(f"select hash({keys_sql}), {keys_sql} from {source}").to_arrow_table()
    row_hashes = first.column(0).to_numpy()  # (n_rows,) uint64
    layout = layout_groups(first.select(range(1, first.num_columns)))
    del first
    step = columns_per_pass or max(1, MEDIAN_VALUES_PER_PASS // max(layout.n_rows, 1))
    result = layout.groups.append_column("n_cells", pa.array(layout.counts, pa.int64()))
    block: np.ndarray | None = None  # (n_columns, n_rows), reused by every pass
    for start in range(0, len(features), step):
        batch = features[start : start + step]
        values_sql = ", ".join(quote(f) for f in batch)
        reader = con.sql(f"select hash({keys_sql}), {values_sql} from {source}").to_arrow_reader(
            ROWS_PER_BATCH
        )
        dtype = block_dtype(pa.schema(list(reader.schema)[1:]))
        if block is None or block.dtype != dtype or block.shape[0] < len(batch):
            block = np.empty((len(batch), layout.n_rows), dtype=dtype)
        values = block[: len(batch)]
        try:
            fill_block(_in_first_order(reader, row_hashes), layout, values)
            medians = grouped_median(values, layout)  # (n_groups, n_batch)
        except _RowOrderChanged:
            reader.close()
            medians = _median_by_own_keys(con, source, strata, batch, layout.groups, values)
        for j, name in enumerate(batch):
            result = result.append_column(name, pa.array(medians[:, j]))
    return result


def _in_first_order(
    reader: pa.RecordBatchReader, row_hashes: np.ndarray
) -> Iterator[pa.RecordBatch]:
    """The reader's batches without their leading strata hash, checked against the first scan."""
    offset = 0
    for batch in reader:
        stop = offset + batch.num_rows
        hashes = batch.column(0).to_numpy()
        if stop > len(row_hashes) or not np.array_equal(hashes, row_hashes[offset:stop]):
            raise _RowOrderChanged
        yield batch.select(range(1, batch.num_columns))
        offset = stop
    if offset != len(row_hashes):
        raise _RowOrderChanged


def _median_by_own_keys(
    con: duckdb.DuckDBPyConnection,
    source: str,
    strata: list[str],
    batch: list[str],
    groups: pa.Table,
    block: np.ndarray,
) -> np.ndarray:
    """Medians of one column slice grouped by the keys scanned with it (no order assumed)."""
    names = [*strata, *batch]
    scanned = con.sql(f"select {', '.join(quote(n) for n in names)} from {source}").to_arrow_table()
    layout = layout_groups(scanned.select(list(range(len(strata)))))
    if layout.n_rows != block.shape[1] or not layout.groups.equals(groups):
        raise ValueError(f"{source} returned different rows in two scans: is it deterministic?")
    values = scanned.select(list(range(len(strata), len(names))))
    fill_block(values.to_batches(ROWS_PER_BATCH), layout, block)
    return grouped_median(block, layout)
