"""Aggregate wide per-cell feature tables to per-group (well) profiles in DuckDB SQL."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

OPERATIONS = {"mean": "avg", "median": "median"}


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

    A median must hold every value of a column until its group is done, so aggregating all
    features at once holds the whole table; passes over column slices bound that memory to
    rows × columns_per_pass values (a columnar source such as Parquet reads only the slice).
    """
    features = list(features)
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
