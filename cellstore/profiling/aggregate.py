"""Aggregate per-cell features to per-group (well) profiles: grouped means and exact medians.

Sources are DuckDB table expressions or Parquet files; features are wide numeric columns or
one FLOAT[] vector column. The numerics live in `grouped.py` (numpy over Arrow buffers).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cellstore.profiling.grouped import (
    Features,
    Grouped,
    Scan,
    grouped_mean,
    grouped_median,
)

OPERATIONS = {"mean": "avg", "median": "median"}
ROWS_PER_BATCH = 2**17  # rows streamed from DuckDB at a time
COLUMNS_PER_READ = 64  # Parquet columns decoded per read: bounds the reader's buffers
VECTOR_READ_BUFFER = 8 * 2**20  # bytes: stream a list column's pages instead of a whole chunk
VECTOR_ROWS_PER_BATCH = 2**15


def quote(identifier: str) -> str:
    """A SQL identifier in double quotes (embedded quotes doubled)."""
    return '"' + identifier.replace('"', '""') + '"'


def aggregate_sql(
    source: str, strata: Sequence[str], features: Sequence[str], operation: str = "mean"
) -> str:
    """One SELECT aggregating `features` over rows of `source` per `strata` (DuckDB's own).

    Kept as the plain-SQL reference of what `aggregate` computes. The result has the strata,
    `n_cells`, then one column per feature, sorted by strata.
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


def duckdb_scan(con: duckdb.DuckDBPyConnection, source: str) -> Scan:
    """Stream columns of a DuckDB table expression (`cells`, `read_parquet('x.parquet')`)."""

    def scan(columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        names = ", ".join(quote(c) for c in columns)
        yield from con.sql(f"select {names} from {source}").to_arrow_reader(ROWS_PER_BATCH)

    return scan


def parquet_scan(paths: Sequence[Path | str], *, prefetch: bool = True) -> Scan:
    """Stream columns of Parquet files, one row group at a time (decoded by pyarrow).

    Wide columns are read a few dozen at a time and joined into one batch; a list column is
    read page by page. With `prefetch`, the next batch is decoded in a thread while the
    current one is aggregated (pyarrow and numpy release the GIL).
    """
    paths = [Path(p) for p in paths]

    def batches(columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        for path in paths:
            file = pq.ParquetFile(path, pre_buffer=False, buffer_size=VECTOR_READ_BUFFER)
            schema = file.schema_arrow
            lists = [
                c
                for c in columns
                if pa.types.is_list(schema.field(c).type)
                or pa.types.is_large_list(schema.field(c).type)
            ]
            if lists:  # a vector column: page by page, in modest batches
                yield from file.iter_batches(VECTOR_ROWS_PER_BATCH, columns=list(columns))
                continue
            file = pq.ParquetFile(path, pre_buffer=True)
            for group in range(file.num_row_groups):
                parts = [
                    file.read_row_group(group, columns=list(columns[i : i + COLUMNS_PER_READ]))
                    for i in range(0, len(columns), COLUMNS_PER_READ)
                ]
                arrays = [a for part in parts for a in part.columns]
                yield pa.RecordBatch.from_arrays(
                    [a.chunk(0) if a.num_chunks == 1 else a.combine_chunks() for a in arrays],
                    names=list(columns),
                )  # a row group's column is one chunk: no copy

    def scan(columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        source = batches(columns)
        return _prefetched(source) if prefetch else source

    return scan


def _prefetched(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Yield `batches` while a thread reads the next one (never more than one ahead)."""
    slot: queue.Queue = queue.Queue()
    turn = threading.Semaphore(1)  # the reader may hold one batch the consumer has not taken
    done = object()
    stop = threading.Event()

    def read() -> None:
        try:
            while True:
                turn.acquire()
                if stop.is_set():
                    return
                batch = next(batches, done)
                slot.put(batch)
                if batch is done:
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            slot.put(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        while True:
            item = slot.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            turn.release()  # read the next batch while this one is aggregated
            yield item
            del item
    finally:
        stop.set()
        turn.release()
        thread.join()


def aggregate_scan(
    scan: Scan,
    strata: Sequence[str],
    features: Features,
    operation: str = "mean",
    *,
    columns_per_pass: int | None = None,
    threads: int = 2,
) -> Grouped:
    """Aggregate a scan per strata; see `aggregate` for the semantics.

    columns_per_pass: wide features aggregated per scan (default: every column at once for
    means; for medians about `MEDIAN_VALUES_PER_PASS` values held at a time).
    """
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}: expected one of {list(OPERATIONS)}")
    if not strata:
        raise ValueError("aggregate needs at least one strata column")
    strata = list(strata)
    if operation == "mean":
        if features.vector is not None or not columns_per_pass:
            return grouped_mean(scan([*strata, *features.names]), strata, features)
        return _by_column_slices(
            lambda part: grouped_mean(scan([*strata, *part.columns]), strata, part),
            features,
            columns_per_pass,
        )
    with ThreadPoolExecutor(threads) if threads > 1 else _NoPool() as pool:
        if features.vector is not None or not columns_per_pass:
            return grouped_median(scan, strata, features, pool=pool)
        return _by_column_slices(
            lambda part: grouped_median(scan, strata, part, pool=pool),
            features,
            columns_per_pass,
        )


class _NoPool:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _by_column_slices(run, features: Features, step: int) -> Grouped:
    """Run an aggregation per slice of `step` wide columns; join the slices' results."""
    parts = [
        run(Features(features.columns[i : i + step])) for i in range(0, len(features.columns), step)
    ]
    if not parts:
        return run(features)
    first = parts[0]
    return Grouped(
        first.groups,
        first.counts,
        np.hstack([p.values for p in parts]),
        np.hstack([p.missing for p in parts]),
    )


def aggregate(
    con: duckdb.DuckDBPyConnection | None,
    source: str | Sequence[Path | str],
    strata: Sequence[str],
    features: Sequence[str] = (),
    operation: str = "mean",
    *,
    vector: str | None = None,
    columns_per_pass: int | None = None,
    threads: int = 2,
) -> pa.Table:
    """Aggregate `features` (wide columns) or the FLOAT[] column `vector` per `strata`.

    source: a DuckDB table expression read through `con` (a table name,
    `read_parquet('cells.parquet')`), or Parquet file paths when `con` is None.
    The result has the strata, `n_cells`, then one float64 column per wide feature (or one
    `large_list<double>` column named `vector`), sorted by strata with nulls last.
    Means are SQL `avg` (float64 sums, NULLs skipped, a NaN value gives NaN, a group
    without values gives NULL). Medians are exact, as pandas'
    `groupby().median()` (NaN and NULL skipped, an even count averages the two middle values,
    a group without values gives NaN); a source whose groups come as runs (cells of a well
    together, as in per-image exports) takes one streaming pass, any other order a pass
    over the keys plus passes over feature slices of about `MEDIAN_VALUES_PER_PASS` values.
    """
    chosen = Features(vector=vector) if vector is not None else Features(tuple(features))
    if vector is not None and features:
        raise ValueError("pass wide `features` or one `vector` column, not both")
    if con is not None:
        if not isinstance(source, str):
            raise ValueError("with a DuckDB connection, source is a table expression")
        scan = duckdb_scan(con, source)
    else:
        scan = parquet_scan([source] if isinstance(source, (str, Path)) else source)
    result = aggregate_scan(
        scan, strata, chosen, operation, columns_per_pass=columns_per_pass, threads=threads
    )
    return grouped_table(result, chosen)


def grouped_table(result: Grouped, features: Features) -> pa.Table:
    """A `Grouped` as a table: strata, n_cells, then the features (wide, or one list column)."""
    table = result.groups.append_column("n_cells", pa.array(result.counts, pa.int64()))
    if features.vector is not None:
        n, d = result.values.shape
        offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int64))
        values = pa.array(result.values.reshape(-1), mask=result.missing.reshape(-1))
        return table.append_column(features.vector, pa.LargeListArray.from_arrays(offsets, values))
    for j, name in enumerate(features.columns):
        column = pa.array(result.values[:, j], mask=result.missing[:, j])
        table = table.append_column(name, column)
    return table


def iter_batches(table: pa.Table | Iterable[pa.RecordBatch]) -> Scan:
    """A scan over an in-memory Arrow table (tests, small inputs)."""

    def scan(columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        assert isinstance(table, pa.Table)
        yield from table.select(list(columns)).to_batches(ROWS_PER_BATCH)

    return scan
