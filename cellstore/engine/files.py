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

    DuckLake may keep small inserts and deletes inlined in the catalog, and marks deleted
    rows in delete files that its readers apply on the fly; a plain Parquet reader would miss
    the first and see the second again. So when the files do not hold exactly the table's
    rows, inlined data is flushed to files and the deletes are merged into rewritten data
    files (`ducklake_flush_inlined_data`, `ducklake_rewrite_data_files`), in one snapshot of
    their own, before the list is taken.
    """
    n_rows = con.execute(f'select count(*) from "{table}"').fetchone()[0]
    listing = _listing(con, table)
    files = _counted([path for path, _ in listing], con)
    if any(delete for _, delete in listing) or sum(n for _, n in files) != n_rows:
        with transaction(con, f"compact {table} for file readers", {"compact": table}):
            con.execute(
                f"call ducklake_flush_inlined_data('{LAKE}', table_name => {_literal(table)})"
            )
        with transaction(con, f"compact {table} for file readers", {"compact": table}):
            con.execute(
                f"call ducklake_rewrite_data_files('{LAKE}', {_literal(table)}, "
                "delete_threshold => 0)"
            )
        listing = _listing(con, table)
        files = _counted([path for path, _ in listing], con)
    if any(delete for _, delete in listing) or sum(n for _, n in files) != n_rows:
        raise CellstoreError(
            f"table {table}: its Parquet files hold {sum(n for _, n in files)} rows, the table "
            f"{n_rows}: cannot hand it over as files"
        )
    snapshot = con.execute(f"select max(snapshot_id) from {LAKE}.snapshots()").fetchone()[0]
    columns = tuple(con.table(table).columns)
    return TableFiles(table=table, snapshot_id=int(snapshot), files=tuple(files), columns=columns)


def _counted(paths: list[str], con: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    if not paths:
        return []
    listed = ", ".join(_literal(p) for p in paths)
    counts = dict(
        con.execute(f"select file_name, num_rows from parquet_file_metadata([{listed}])").fetchall()
    )
    return [(p, int(counts[p])) for p in paths]
