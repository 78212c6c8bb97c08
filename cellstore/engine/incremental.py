"""Bookkeeping of incremental stages: which driver keys to recompute, and what was processed.

Two metadata tables per incremental stage, rewritten with each commit of the stage:
- `cellstore_meta."<stage>__processed"`: every driver key with a content hash of its driver
  rows (`row_hash`), so a key whose rows changed is recomputed;
- `cellstore_meta."<stage>__partitions"`: for each side input declared in `partitions=`, a
  content hash per partition value, so a side input change recomputes only the partitions
  (and hence the driver keys) whose side rows changed.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from cellstore.engine.warehouse import META_SCHEMA
from cellstore.errors import CellstoreError

TODO = "__cellstore_todo"  # temp table: the driver keys this run recomputes


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ledger_table(stage: str) -> str:
    return f"{META_SCHEMA}.{quote(stage + '__processed')}"


def partitions_table(stage: str) -> str:
    return f"{META_SCHEMA}.{quote(stage + '__partitions')}"


def _keys(key: Sequence[str]) -> str:
    return ", ".join(quote(k) for k in key)


def _group_hashes(table: str, key: Sequence[str], columns: Sequence[str] | None = None) -> str:
    """One row per key value of `table`: the key and an order-independent hash of its rows
    (of `columns` only, if given)."""
    keys = _keys(key)
    row = f"hash({_keys(columns)})" if columns else "hash(__row)"
    return (
        f"select {keys}, hash(list({row} order by {row})) as row_hash "
        f"from {quote(table)} as __row group by {keys}"
    )


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str] | None:
    rows = con.execute(
        "select column_name from duckdb_columns() where database_name = current_database() "
        f"and schema_name = '{schema}' and table_name = '{table.replace(chr(39), chr(39) * 2)}'"
    ).fetchall()
    return {r[0] for r in rows} or None


def can_run_incrementally(
    con: duckdb.DuckDBPyConnection, stage: str, changed_sides: Sequence[str]
) -> bool:
    """The ledger records row hashes, and every changed side has recorded partitions."""
    ledger = _columns(con, META_SCHEMA, stage + "__processed")
    if ledger is None or "row_hash" not in ledger:
        return False  # a ledger written before row hashes: rebuild once
    return not changed_sides or _columns(con, META_SCHEMA, stage + "__partitions") is not None


def check_columns(
    con: duckdb.DuckDBPyConnection,
    stage: str,
    driver: str,
    partitions: dict[str, str],
    compare: Sequence[str] | None,
) -> None:
    """Declared partition and compare columns exist, or one line naming the table."""
    missing = sorted(set(compare or ()) - (_columns(con, "main", driver) or set()))
    if missing:
        raise CellstoreError(f"stage {stage}: compare names {missing}, not columns of {driver}")
    for side, column in partitions.items():
        for table in (side, driver):
            columns = _columns(con, "main", table) or set()
            if column not in columns:
                raise CellstoreError(
                    f"stage {stage}: partitions[{side!r}] = {column!r}, but table {table} "
                    f"has no column {column!r}"
                )


def prepare(
    con: duckdb.DuckDBPyConnection,
    stage: str,
    driver: str,
    key: Sequence[str],
    partitions: dict[str, str],
    changed_sides: Sequence[str],
    compare: Sequence[str] | None = None,
) -> str:
    """Fill the temp table of keys to recompute; return the SQL of the driver rows to pass.

    Keys to recompute: new keys and keys whose rows changed (hash differs from the ledger),
    plus every key of the driver lying in a partition of a changed side input whose hash
    differs from the recorded one (new, changed or vanished partition values).
    """
    keys = _keys(key)
    parts = [
        f"select {keys} from ({_group_hashes(driver, key, compare)}) "
        f"anti join {ledger_table(stage)} using ({keys}, row_hash)"
    ]
    for side in changed_sides:
        column = partitions[side]
        now = (
            f"select {quote(column)}::varchar as part, row_hash "
            f"from ({_group_hashes(side, [column])})"
        )
        old = f"select part, row_hash from {partitions_table(stage)} where input = '{side}'"
        # (now − old) ∪ (old − now): partitions whose hash differs, appeared or vanished.
        changed = (
            f"select part from (({now}) except ({old})) "
            f"union select part from (({old}) except ({now}))"
        )
        parts.append(
            f"select distinct {keys} from {quote(driver)} "
            f"where {quote(column)}::varchar in ({changed})"
        )
    con.execute(f"create or replace temp table {TODO} as " + " union ".join(parts))
    return f"select * from {quote(driver)} semi join {TODO} using ({keys})"


def delete_stale(
    con: duckdb.DuckDBPyConnection, table: str, driver: str, key: Sequence[str]
) -> None:
    """Delete output rows of recomputed keys and of keys gone from the driver."""
    keys = _keys(key)
    con.execute(
        f"delete from {quote(table)} where ({keys}) in (select {keys} from {TODO}) "
        f"or ({keys}) not in (select {keys} from {quote(driver)})"
    )


def record(
    con: duckdb.DuckDBPyConnection,
    stage: str,
    driver: str,
    key: Sequence[str],
    partitions: dict[str, str],
    compare: Sequence[str] | None = None,
) -> None:
    """Rewrite the ledger and the partition hashes as of the inputs this run read."""
    hashes = _group_hashes(driver, key, compare)
    con.execute(f"create or replace table {ledger_table(stage)} as {hashes}")
    if not partitions:
        return
    selects = [
        f"select '{side}' as input, {quote(column)}::varchar as part, row_hash "
        f"from ({_group_hashes(side, [column])})"
        for side, column in sorted(partitions.items())
    ]
    con.execute(
        f"create or replace table {partitions_table(stage)} as " + " union all ".join(selects)
    )
