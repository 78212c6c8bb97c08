"""An input table as the Parquet files of its committed snapshot (`@stage(files=[...])`)."""

from __future__ import annotations

import duckdb

from cellstore.engine.stage import TableFiles
from cellstore.engine.warehouse import LAKE, transaction
from cellstore.errors import CellstoreError


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _listing(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str | None]]:
    return con.execute(
        f"select data_file, delete_file from ducklake_list_files('{LAKE}', {_literal(table)})"
    ).fetchall()


def table_files(con: duckdb.DuckDBPyConnection, table: str) -> TableFiles:
    """The table's data files with their row counts, holding exactly its rows.

    DuckLake marks deleted rows in delete files that readers apply on the fly; a plain
    Parquet reader would see those rows again. So a table with delete files is compacted
    first (`ducklake_rewrite_data_files`: its deletes merged into new files), in its own
    snapshot, before the list is taken. Rows inlined in the catalog are flushed to files.
    """
    listing = _listing(con, table)
    if any(delete for _, delete in listing):
        with transaction(con, f"compact {table} for file readers", {"compact": table}):
            con.execute(
                f"call ducklake_rewrite_data_files('{LAKE}', {_literal(table)}, "
                "delete_threshold => 0)"
            )
        listing = _listing(con, table)
    n_rows = con.execute(f'select count(*) from "{table}"').fetchone()[0]
    files = _counted([path for path, _ in listing], con)
    if sum(n for _, n in files) != n_rows:
        with transaction(con, f"flush {table} for file readers", {"flush": table}):
            con.execute(
                f"call ducklake_flush_inlined_data('{LAKE}', table_name => {_literal(table)})"
            )
        files = _counted([path for path, _ in _listing(con, table)], con)
    if sum(n for _, n in files) != n_rows:
        raise CellstoreError(
            f"table {table}: its Parquet files hold {sum(n for _, n in files)} rows, the table "
            f"{n_rows}: cannot hand it over as files"
        )
    snapshot = con.execute(f"select max(snapshot_id) from {LAKE}.snapshots()").fetchone()[0]
    return TableFiles(table=table, snapshot_id=int(snapshot), files=tuple(files))


def _counted(paths: list[str], con: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    if not paths:
        return []
    listed = ", ".join(_literal(p) for p in paths)
    counts = dict(
        con.execute(f"select file_name, num_rows from parquet_file_metadata([{listed}])").fetchall()
    )
    return [(p, int(counts[p])) for p in paths]
