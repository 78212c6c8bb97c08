"""Damage detection: does every data file a snapshot references exist, whole and readable?"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import duckdb

from cellstore.engine.warehouse import LAKE

MAGIC = b"PAR1"


@dataclass(frozen=True)
class DataFile:
    """One Parquet file the catalog references (a data file or a delete file)."""

    schema: str
    table: str
    path: str
    size: int | None  # bytes, as recorded at commit
    footer_size: int | None


@dataclass(frozen=True)
class Damage:
    file: DataFile
    problem: str  # "missing", "is 10 bytes, recorded 2,000", "footer unreadable: ..."

    @property
    def table(self) -> str:
        file = self.file
        return file.table if file.schema == "main" else f"{file.schema}.{file.table}"


def repair_hint(table: str) -> str:
    """The command that rewrites a damaged table from its inputs."""
    if "." in table:  # cellstore_meta.<stage>__processed ledgers are rewritten by a full build
        return "cellstore build --full-refresh"
    return f"cellstore build --full-refresh --select {table}"


def referenced_files(
    con: duckdb.DuckDBPyConnection, at: int | None = None, schema: str | None = None
) -> list[DataFile]:
    """Every file of every table at snapshot `at` (default: the connection's snapshot)."""
    where = f" and schema_name = '{schema}'" if schema else ""
    tables = con.execute(
        f"select schema_name, table_name from duckdb_tables() "
        f"where database_name = '{LAKE}'{where} order by all"
    ).fetchall()
    version = f", snapshot_version => {int(at)}" if at is not None else ""
    files: list[DataFile] = []
    for schema_name, table in tables:
        rows = con.execute(
            f"select data_file, data_file_size_bytes, data_file_footer_size, delete_file, "
            f"delete_file_size_bytes, delete_file_footer_size "
            f"from ducklake_list_files('{LAKE}', ?, schema => ?{version})",
            [table, schema_name],
        ).fetchall()
        for path, size, footer, del_path, del_size, del_footer in rows:
            files.append(DataFile(schema_name, table, path, size, footer))
            if del_path:
                files.append(DataFile(schema_name, table, del_path, del_size, del_footer))
    return files


def _is_local(path: str) -> bool:
    return path.startswith("/") or path.startswith("file:")


def _local(path: str) -> str:
    return path.removeprefix("file://").removeprefix("file:")


def cheap_problem(file: DataFile) -> str | None:
    """Existence and size only: one stat per file, cheap enough for every build."""
    try:
        size = os.stat(_local(file.path)).st_size
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if file.size is not None and size != file.size:
        return f"is {size:,} bytes, recorded {file.size:,} (truncated or overwritten)"
    return None


def deep_problem(file: DataFile) -> str | None:
    """Existence, size, both magic numbers, the recorded footer length and a parsed footer."""
    problem = cheap_problem(file)
    if problem:
        return problem
    import pyarrow.parquet as pq

    path = _local(file.path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
            handle.seek(-8, os.SEEK_END)
            trailer = handle.read(8)
        if head != MAGIC or trailer[4:] != MAGIC:
            return "is not a Parquet file (magic number PAR1 missing)"
        footer = struct.unpack("<i", trailer[:4])[0]
        if file.footer_size and footer != file.footer_size:
            return f"footer is {footer:,} bytes, recorded {file.footer_size:,}"
        pq.read_metadata(path)
    except (OSError, ValueError) as exc:
        return f"footer unreadable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return None


def verify_files(
    con: duckdb.DuckDBPyConnection,
    at: int | None = None,
    *,
    schema: str | None = None,
    tables: set[str] | None = None,
    deep: bool = True,
) -> tuple[list[DataFile], list[Damage]]:
    """(files listed, damage found) for snapshot `at`; only files on a local filesystem are
    checked (an object store's files are listed, not opened)."""
    files = referenced_files(con, at, schema)
    if tables is not None:
        files = [f for f in files if f.table in tables]
    check = deep_problem if deep else cheap_problem
    damage = []
    for file in files:
        if not _is_local(file.path):
            continue
        problem = check(file)
        if problem:
            damage.append(Damage(file, problem))
    return files, damage


def current_files(con: duckdb.DuckDBPyConnection, data_dir: str, schema: str) -> list[DataFile]:
    """The latest snapshot's files of one schema, read from DuckLake's own catalog tables in
    one query (~0.03 s; `ducklake_list_files` once per table costs ~1 s on a busy machine).
    `data_dir` is where the warehouse's data lives now (it may have moved since it was made).
    """
    meta = f"__ducklake_metadata_{LAKE}"

    def under(prefix: str, alias: str) -> str:
        return (
            f"case when {alias}.path_is_relative then {prefix} || {alias}.path "
            f"else {alias}.path end"
        )

    table_dir = under(under("$1", "s"), "t")
    rows = con.execute(
        f"""
        with current_tables as (
            select s.schema_name, t.table_id, t.table_name, {table_dir} as folder
            from {meta}.ducklake_table t
            join {meta}.ducklake_schema s using (schema_id)
            where t.end_snapshot is null and s.end_snapshot is null and s.schema_name = $2
        ),
        files as (
            select table_id, path, path_is_relative, file_size_bytes, footer_size
            from {meta}.ducklake_data_file where end_snapshot is null
            union all
            select table_id, path, path_is_relative, file_size_bytes, footer_size
            from {meta}.ducklake_delete_file where end_snapshot is null
        )
        select c.schema_name, c.table_name,
            case when f.path_is_relative then c.folder || f.path else f.path end,
            f.file_size_bytes, f.footer_size
        from files f join current_tables c using (table_id)
        order by all
        """,
        [data_dir, schema],
    ).fetchall()
    return [DataFile(*row) for row in rows]


def damaged_tables(con: duckdb.DuckDBPyConnection, data_dir: str) -> dict[str, str]:
    """User tables of the latest snapshot whose files are missing or the wrong size, each
    with a one-line reason (what a build prints when it rebuilds them instead of skipping)."""
    by_table: dict[str, list[Damage]] = {}
    for file in current_files(con, data_dir, "main"):
        problem = cheap_problem(file) if _is_local(file.path) else None
        if problem:
            by_table.setdefault(file.table, []).append(Damage(file, problem))
    reasons = {}
    for table, items in by_table.items():
        first = items[0]
        reasons[table] = (
            f"{len(items)} data file(s) of {table} damaged: {first.file.path} {first.problem}; "
            f"rebuilding it from scratch"
        )
    return reasons


def content_digests(
    con: duckdb.DuckDBPyConnection, exclude: dict[str, list[str]] | None = None
) -> dict[str, tuple[int, str]]:
    """table → (rows, digest of its whole content, row order ignored), for user tables.

    Each row is cast to text, which is bit-faithful for floats (DuckDB prints the shortest
    text that reads back to the same bits), so equal digests mean bit-identical tables.
    exclude: {table: columns} left out, e.g. the role-`run` columns of the contracts
    (`cellstore.checks.contract.run_columns`): timings and run ids differ between builds.
    """
    out = {}
    for (table,) in con.execute(
        f"select table_name from duckdb_tables() where database_name = '{LAKE}' "
        "and schema_name = 'main' order by 1"
    ).fetchall():
        quoted = '"' + table.replace('"', '""') + '"'
        left_out = (exclude or {}).get(table)
        columns = "*"
        if left_out:
            columns = (
                "* exclude (" + ", ".join('"' + c.replace('"', '""') + '"' for c in left_out) + ")"
            )
        n, digest = con.execute(
            f"select count(*), md5(coalesce(string_agg(h, '' order by h), '')) "
            f"from (select md5(t::varchar) as h from (select {columns} from {quoted}) as t)"
        ).fetchone()
        out[table] = (int(n), digest)
    return out
