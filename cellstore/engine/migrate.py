"""Copy a file-catalogued warehouse (SQLite/DuckDB) to a Postgres catalog, history included.

DuckLake's catalog is a set of plain `ducklake_*` tables; its Parquet files are addressed
relative to the catalog's data path. So the copy is: the data folder copied to the new data
path, a fresh DuckLake catalog initialised in Postgres (DuckLake creates the tables with the
column types it expects there), and every catalog row inserted into it in one transaction.
Rows that DuckLake inlined into the catalog (small inserts and deletes) are kept in tables
whose column types depend on the backend, so they are first flushed to Parquet, on a
scratch copy of the source catalog (the source itself is never written): snapshot ids, time
travel and run records are preserved, plus one final snapshot recording that flush.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb

from cellstore.engine.lock import build_lock
from cellstore.engine.warehouse import (
    CATALOG_FILES,
    LAKE,
    Warehouse,
    _extension_path,
    load_postgres_extension,
    offline_connection,
    postgres_reason,
    sql_string,
)
from cellstore.errors import CellstoreError

SOURCE, TARGET = "source_catalog", "target_catalog"


@dataclass
class MigrationSummary:
    n_snapshots: int
    n_tables: int
    n_files: int
    data_path: str


def migrate_to_postgres(source: Warehouse, target: Warehouse) -> MigrationSummary:
    """Copy `source` (a SQLite catalog) into the empty Postgres catalog of `target`.

    `target.data_path` is where the Parquet files are copied to (required: the shared
    folder every user of the Postgres catalog reads). Holds both build locks throughout.
    """
    if source.catalog != "sqlite":
        raise CellstoreError(
            f"can only migrate a SQLite-catalogued warehouse, not catalog {source.catalog!r}"
        )
    if not target.is_postgres:
        raise CellstoreError(f"the target catalog must be 'postgres:<dsn>', got {target.catalog!r}")
    if not target.data_path:
        raise CellstoreError("give the target a data path (--data-path DIR): the shared folder")
    source.require()
    new_data = Path(target.data_path)
    if new_data.exists() and any(new_data.iterdir()):
        raise CellstoreError(f"data path {new_data} is not empty: choose a new folder")
    with (
        build_lock(source.root, catalog=source.catalog),
        build_lock(target.root, catalog=target.catalog),
    ):
        _require_empty(target)
        created = not new_data.exists()
        try:
            with tempfile.TemporaryDirectory(prefix="cellstore-migrate-") as scratch:
                shutil.copytree(_source_data_dir(source), new_data, dirs_exist_ok=True)
                catalog_copy = Path(scratch) / CATALOG_FILES["sqlite"]
                shutil.copy2(source.root / CATALOG_FILES["sqlite"], catalog_copy)
                _flush_inlined(catalog_copy, str(new_data))
                _initialise(target)
                summary = _copy_rows(catalog_copy, target)
                _stop_inlining(target)
                return summary
        except BaseException:
            # The rows are copied in one transaction: on failure the target holds at most a
            # fresh, empty catalog (accepted by a retry); the copied files go.
            if created:
                shutil.rmtree(new_data, ignore_errors=True)
            raise


def _source_data_dir(source: Warehouse) -> Path:
    con = source.connect(read_only=True)
    try:
        path = con.execute(
            f"select value from {LAKE}.options() where option_name = 'data_path'"
        ).fetchone()
    except duckdb.Error:
        path = None
    finally:
        con.close()
    folder = Path(path[0]) if path and path[0] else Path(source.data_dir)
    if not folder.is_dir():
        raise CellstoreError(f"data folder {folder} of {source.root} does not exist")
    return folder


def _require_empty(target: Warehouse) -> None:
    con = _postgres(target, read_only=True)
    try:
        found = con.execute(
            f"select count(*) from information_schema.tables "
            f"where table_catalog = '{TARGET}' and table_name = 'ducklake_snapshot'"
        ).fetchone()[0]
        # A catalog left by a failed migration has its first snapshot only: reuse it.
        used = (
            found
            and con.execute(f"select count(*) > 1 from {TARGET}.ducklake_snapshot").fetchone()[0]
        )
    finally:
        con.close()
    if used:
        raise CellstoreError(f"{target.label} already holds a DuckLake catalog: use an empty one")


def _postgres(target: Warehouse, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    con = offline_connection()
    load_postgres_extension(con)
    mode = ", read_only" if read_only else ""
    try:
        con.execute(f"attach {sql_string(target.postgres_dsn)} as {TARGET} (type postgres{mode})")
    except duckdb.Error as exc:
        con.close()
        raise CellstoreError(f"cannot open {target.label}: {postgres_reason(exc)}") from None
    return con


def _flush_inlined(catalog_copy: Path, data_path: str) -> None:
    """Write the inlined rows of the scratch catalog copy as Parquet into `data_path`."""
    con = offline_connection()
    try:
        con.execute(f"load '{_extension_path('duckdb_extension_ducklake', 'ducklake')}'")
        con.execute(
            f"load '{_extension_path('duckdb_extension_sqlite_scanner', 'sqlite_scanner')}'"
        )
        con.execute(
            f"attach {sql_string(f'ducklake:sqlite:{catalog_copy}')} as {LAKE} "
            f"(data_path {sql_string(data_path)}, override_data_path true)"
        )
        con.execute(f"call ducklake_flush_inlined_data('{LAKE}')")
    finally:
        con.close()


def _initialise(target: Warehouse) -> None:
    """An empty DuckLake catalog in Postgres: DuckLake creates its tables and types."""
    con = offline_connection()
    try:
        con.execute(f"load '{_extension_path('duckdb_extension_ducklake', 'ducklake')}'")
        load_postgres_extension(con)
        con.execute(
            f"attach {sql_string(target.catalog_uri())} as {LAKE} "
            f"(data_path {sql_string(str(target.data_path))})"
        )
    finally:
        con.close()


def _stop_inlining(target: Warehouse) -> None:
    """New commits write Parquet files only: a first commit that inlines rows into a new
    table failed on the copied catalog (DuckLake 1.5.5 did not create its inlined table)."""
    con = target.connect()
    try:
        con.execute(f"call {LAKE}.set_option('data_inlining_row_limit', 0)")
    finally:
        con.close()


def _copy_rows(catalog_copy: Path, target: Warehouse) -> MigrationSummary:
    """Replace the fresh catalog's rows by the source's, in one Postgres transaction."""
    con = _postgres(target)
    try:
        con.execute(
            f"load '{_extension_path('duckdb_extension_sqlite_scanner', 'sqlite_scanner')}'"
        )
        con.execute(f"attach {sql_string(str(catalog_copy))} as {SOURCE} (type sqlite, read_only)")
        tables = _catalog_tables(con, SOURCE)
        target_tables = set(_catalog_tables(con, TARGET))
        missing = [t for t in tables if t not in target_tables]
        if missing:
            raise CellstoreError(f"the Postgres catalog lacks DuckLake tables {missing}")
        registered: list[str] = []
        con.execute("begin")
        for table in tables:
            columns = [
                c for c in _columns(con, SOURCE, table) if c in set(_columns(con, TARGET, table))
            ]
            names = ", ".join(f'"{c}"' for c in columns)
            con.execute(f"delete from {TARGET}.{table}")
            con.execute(
                f"insert into {TARGET}.{table} ({names}) select {names} from {SOURCE}.{table}"
            )
        # Inlined rows of tables dropped since (replaced by a rebuild) survive the flush and
        # are still read by time travel: copy them as they are (DuckLake casts them on read).
        for table in _inlined_tables(con, SOURCE):
            if con.execute(f"select count(*) from {SOURCE}.{table}").fetchone()[0]:
                con.execute(f"create table {TARGET}.{table} as select * from {SOURCE}.{table}")
                registered.append(table)
        # The copied files now live under the new data path.
        con.execute(
            f"update {TARGET}.ducklake_metadata set value = ? "
            "where key = 'data_path' and scope is null",
            [str(target.data_path)],
        )
        names = ", ".join(sql_string(t) for t in registered) or "''"
        con.execute(
            f"insert into {TARGET}.ducklake_inlined_data_tables "
            f"select * from {SOURCE}.ducklake_inlined_data_tables where table_name in ({names})"
        )
        con.execute("commit")
        n_snapshots, n_tables, n_files = con.execute(
            f"select (select count(*) from {TARGET}.ducklake_snapshot), "
            f"(select count(distinct table_id) from {TARGET}.ducklake_table), "
            f"(select count(*) from {TARGET}.ducklake_data_file)"
        ).fetchone()
    finally:
        con.close()
    return MigrationSummary(n_snapshots, n_tables, n_files, str(target.data_path))


def _catalog_tables(con: duckdb.DuckDBPyConnection, database: str) -> list[str]:
    """DuckLake's own tables (inlined-data tables excluded: they are empty after the flush)."""
    rows = con.execute(
        "select table_name from information_schema.tables "
        f"where table_catalog = '{database}' and table_name like 'ducklake_%' "
        "and table_name not like 'ducklake_inlined_data_%' order by 1"
    ).fetchall()
    return [r[0] for r in rows]


def _inlined_tables(con: duckdb.DuckDBPyConnection, database: str) -> list[str]:
    rows = con.execute(
        "select table_name from information_schema.tables "
        f"where table_catalog = '{database}' and table_name like 'ducklake\\_inlined\\_data\\_%' "
        "escape '\\' and table_name <> 'ducklake_inlined_data_tables' order by 1"
    ).fetchall()
    return [r[0] for r in rows]


def _columns(con: duckdb.DuckDBPyConnection, database: str, table: str) -> list[str]:
    rows = con.execute(
        "select column_name from information_schema.columns "
        f"where table_catalog = '{database}' and table_name = '{table}' order by ordinal_position"
    ).fetchall()
    return [r[0] for r in rows]
