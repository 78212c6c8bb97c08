"""DuckLake access: one catalog + Parquet data under a folder, extensions loaded offline."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from cellstore.errors import CellstoreError

LAKE = "lake"
META_SCHEMA = "cellstore_meta"
CATALOG_FILES = {"sqlite": "catalog.sqlite", "duckdb": "catalog.duckdb"}
POSTGRES_PREFIX = "postgres:"

# One row per stage run: what was built, from what, how long it took, and how it ended.
RUNS_DDL = f"""
create table if not exists {META_SCHEMA}.runs (
    run_id varchar, build_id varchar, stage varchar, tables varchar[],
    status varchar, mode varchar, fingerprint varchar, definition_fp varchar,
    inputs varchar, settings varchar, n_rows bigint, duration_s double,
    started_at timestamptz, error varchar, artifact_dir varchar
)
"""

# The run records with the snapshot id of the commit that published each one.
STAGE_RUNS_VIEW = f"""
create view if not exists {META_SCHEMA}.stage_runs as
select s.snapshot_id, r.*
from {META_SCHEMA}.runs r
left join {LAKE}.snapshots() s on s.commit_extra_info->>'run_id' = r.run_id
"""


def _extension_path(package: str, name: str) -> str:
    """Path of an extension binary shipped inside a PyPI wheel (never downloaded)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CellstoreError(f"the {package} wheel is not installed (pip install {package})")
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob(f"extensions/*/{name}.duckdb_extension"))
    if not found:
        raise CellstoreError(f"{package} holds no {name}.duckdb_extension under {folder}")
    return str(found[-1])


def load_postgres_extension(con: duckdb.DuckDBPyConnection) -> None:
    """The postgres extension, from the `duckdb-extension-postgres-scanner` wheel."""
    path = _extension_path("duckdb_extension_postgres_scanner", "postgres_scanner")
    con.execute(f"load '{path}'")


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def mask_password(text: str) -> str:
    """`text` with libpq `password=...` values (and URI passwords) replaced by ***."""
    text = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text)
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


def postgres_reason(error: Exception) -> str:
    """The libpq part of a DuckDB error about a Postgres connection, password masked."""
    text = str(error)
    marker = re.search(r'Unable to connect to Postgres at "[^"]*": ', text)
    if marker:
        text = text[marker.end() :]
    text = re.sub(r"^(IO|Invalid Input|Catalog) Error: ", "", text)
    return mask_password(" ".join(text.split()))


def offline_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that may never download anything."""
    return duckdb.connect(
        ":memory:",
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
    )


@dataclass
class Warehouse:
    """A DuckLake warehouse: `catalog.sqlite` (or other backend) plus `data/` Parquet files."""

    root: Path
    catalog: str = "sqlite"
    data_path: str | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).absolute()

    @property
    def data_dir(self) -> str:
        return self.data_path or str(self.root / "data") + "/"

    @property
    def is_postgres(self) -> bool:
        return self.catalog.startswith(POSTGRES_PREFIX)

    @property
    def postgres_dsn(self) -> str:
        """The libpq connection string of a Postgres catalog (`postgres:<dsn>`)."""
        return self.catalog[len(POSTGRES_PREFIX) :].strip()

    @property
    def label(self) -> str:
        """How messages name this warehouse: its folder, or its catalog (password masked)."""
        if self.is_postgres:
            return f"postgres catalog '{mask_password(self.postgres_dsn)}'"
        return str(self.root)

    def catalog_uri(self) -> str:
        if self.catalog in CATALOG_FILES:
            return f"ducklake:{self.catalog}:{self.root / CATALOG_FILES[self.catalog]}"
        if self.is_postgres:
            # Multi-user setting: a PostgreSQL database holds the DuckLake catalog.
            return f"ducklake:{POSTGRES_PREFIX}{self.postgres_dsn}"
        raise CellstoreError(
            f"unknown catalog {self.catalog!r}: expected 'sqlite', 'duckdb' or 'postgres:<dsn>'"
        )

    def exists(self) -> bool:
        """Whether a catalog exists (a Postgres catalog is asked when attached)."""
        if self.catalog in CATALOG_FILES:
            return (self.root / CATALOG_FILES[self.catalog]).is_file()
        return True

    def require(self) -> None:
        """Fail with one clear line when there is no warehouse to read."""
        if self.is_postgres:
            return  # the catalog lives in Postgres: attaching it says whether it exists
        if not self.root.is_dir():
            raise CellstoreError(
                f"warehouse folder {self.root} does not exist: run `cellstore build` first "
                "or pass --warehouse DIR"
            )
        if not self.exists():
            raise CellstoreError(
                f"{self.root} holds no cellstore catalog: run `cellstore build` first"
            )

    def connect(
        self, *, read_only: bool = False, snapshot: int | None = None
    ) -> duckdb.DuckDBPyConnection:
        """Attach the catalog as `lake` and make it the default database."""
        writing = not read_only and snapshot is None
        if not writing:
            self.require()
            if snapshot is not None and snapshot < 0:
                raise CellstoreError(f"snapshot {snapshot} does not exist in {self.root}")
        elif not self.root.parent.is_dir():
            raise CellstoreError(
                f"cannot create warehouse {self.root}: its parent folder does not exist"
            )
        elif not self.is_postgres:
            self.root.mkdir(exist_ok=True)
        con = offline_connection()
        con.execute(f"load '{_extension_path('duckdb_extension_ducklake', 'ducklake')}'")
        if self.catalog == "sqlite":
            path = _extension_path("duckdb_extension_sqlite_scanner", "sqlite_scanner")
            con.execute(f"load '{path}'")
        elif self.is_postgres:
            load_postgres_extension(con)
        options = []
        if not writing:
            options.append("read_only")
        if snapshot is not None:
            options.append(f"snapshot_version {int(snapshot)}")
        try:
            try:
                self._attach(con, [*self._data_path_options(), *options])
            except duckdb.Error as exc:
                if not (writing and "data_path is not set" in str(exc)):
                    raise
                # A new Postgres catalog without a configured data_path: the data folder
                # defaults to <warehouse>/data/, stored in the catalog for every later user.
                self._attach(con, [f"data_path {sql_string(self.data_dir)}", *options])
        except duckdb.Error as exc:
            con.close()
            raise self._attach_error(exc, snapshot) from None
        con.execute(f"use {LAKE}")
        if writing:
            # A Postgres-catalogued warehouse folder holds only scratch space and artifacts.
            self.root.mkdir(exist_ok=True)
            if not has_metadata(con):
                create_metadata(con)
        return con

    def _data_path_options(self) -> list[str]:
        if self.is_postgres:
            if self.data_path is None:
                return []  # an existing catalog knows where its files are
            # Each machine names where it mounts the shared data folder.
            return [f"data_path {sql_string(self.data_path)}", "override_data_path true"]
        options = [f"data_path {sql_string(self.data_dir)}"]
        if self.data_path is None:
            # The default data folder moves with the warehouse folder (copied, renamed...).
            options.append("override_data_path true")
        return options

    def _attach(self, con: duckdb.DuckDBPyConnection, options: list[str]) -> None:
        with_options = f" ({', '.join(options)})" if options else ""
        con.execute(f"attach {sql_string(self.catalog_uri())} as {LAKE}{with_options}")

    def _attach_error(self, exc: duckdb.Error, snapshot: int | None) -> CellstoreError:
        text = str(exc)
        if snapshot is not None and "snapshot" in text.lower():
            return CellstoreError(f"snapshot {snapshot} does not exist in {self.label}")
        if not self.is_postgres:
            return CellstoreError(f"cannot open warehouse {self.root}: {exc}")
        if "does not exist - and creating a new DuckLake is explicitly disabled" in text:
            return CellstoreError(
                f"{self.label} holds no cellstore warehouse: run `cellstore build` first"
            )
        return CellstoreError(f"cannot open {self.label}: {postgres_reason(exc)}")


def has_metadata(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the catalog holds cellstore's run metadata (a bare DuckLake catalog does not:
    one made elsewhere, or by a build killed between creating the catalog and this)."""
    rows = con.execute(
        f"select count(*) from duckdb_views() where database_name = '{LAKE}' "
        f"and schema_name = '{META_SCHEMA}' and view_name = 'stage_runs'"
    ).fetchone()
    return bool(rows[0])


def create_metadata(con: duckdb.DuckDBPyConnection) -> None:
    """The metadata schema, runs table and stage_runs view, in one snapshot: a kill at any
    moment leaves either all of them or none (readers treat none as "no runs yet")."""
    con.execute("begin")
    try:
        con.execute(f"create schema if not exists {META_SCHEMA}")
        con.execute(RUNS_DDL)
        con.execute(STAGE_RUNS_VIEW)
    except BaseException:
        _rollback(con)
        raise
    con.execute("commit")


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back if a transaction is still open: DuckDB may already have ended a failed one
    (a failed COMMIT, a disk error), and "cannot rollback" must not hide the real cause."""
    try:
        con.execute("rollback")
    except duckdb.Error:
        pass


@contextmanager
def transaction(
    con: duckdb.DuckDBPyConnection, message: str, extra: dict[str, Any]
) -> Iterator[None]:
    """One DuckLake snapshot: everything inside commits together or not at all."""
    con.execute("begin")
    try:
        con.execute(
            f"call {LAKE}.set_commit_message('cellstore', ?, extra_info => ?)",
            [message, json.dumps(extra)],
        )
        yield
    except BaseException:
        _rollback(con)
        raise
    con.execute("commit")


def delete_orphaned_files(con: duckdb.DuckDBPyConnection, dry_run: bool = False) -> list[str]:
    """Delete (or list) data files no snapshot references. Only safe holding the build lock:
    an open transaction's files are unreferenced until it commits."""
    dry = "true" if dry_run else "false"
    rows = con.execute(
        f"call ducklake_delete_orphaned_files('{LAKE}', dry_run => {dry}, cleanup_all => true)"
    ).fetchall()
    return [r[0] for r in rows]


def snapshots(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """All snapshots, oldest first, with the run id cellstore stored in each commit."""
    rows = con.execute(
        f"select snapshot_id, snapshot_time, commit_message, commit_extra_info "
        f"from {LAKE}.snapshots() order by snapshot_id"
    ).fetchall()
    out = []
    for snapshot_id, time, message, extra in rows:
        info = json.loads(extra) if extra else {}
        out.append({"snapshot_id": snapshot_id, "time": time, "message": message, **info})
    return out


def run_snapshots(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Map run_id → snapshot id of the commit that published it."""
    return {s["run_id"]: s["snapshot_id"] for s in snapshots(con) if s.get("run_id")}


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Tables in the warehouse's main schema (user-facing tables)."""
    # A literal, not a bound parameter: binding parameters makes DuckDB import pandas (~0.25 s).
    rows = con.execute(
        f"select table_name from duckdb_tables() "
        f"where database_name = '{LAKE}' and schema_name = 'main'"
    ).fetchall()
    return {r[0] for r in rows}
