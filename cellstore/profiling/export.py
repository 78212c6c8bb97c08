"""Export a warehouse table to Parquet or CSV in pycytominer conventions, written atomically."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from cellstore.errors import CellstoreError

FORMATS = ("parquet", "csv", "csv.gz")

# Profile-table columns and their pycytominer names; other columns become Metadata_<CamelCase>.
METADATA_NAMES = {
    "feature_source": "Metadata_FeatureSource",
    "postprocessing": "Metadata_Postprocessing",
    "plate": "Metadata_Plate",
    "well": "Metadata_Well",
    "compound": "Metadata_Compound",
    "concentration": "Metadata_Concentration",
    "moa": "Metadata_MoA",
    "batch": "Metadata_Batch",
    "n_cells": "Metadata_Count_Cells",
    "n_wells": "Metadata_Count_Wells",
}
FEATURES_COLUMN = "features"
FEATURE_SETS_TABLE = "feature_sets"


@dataclass(frozen=True)
class ExportSummary:
    """What was written."""

    path: Path
    format: str
    rows: int
    columns: int
    is_profile: bool


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def metadata_name(column: str) -> str:
    """pycytominer name of a metadata column: `plate` → `Metadata_Plate`."""
    if column in METADATA_NAMES:
        return METADATA_NAMES[column]
    return "Metadata_" + "".join(part[:1].upper() + part[1:] for part in column.split("_"))


def infer_format(out: Path, fmt: str | None) -> str:
    """The export format: given, or from the file name (.parquet, .csv, .csv.gz)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise CellstoreError(f"unknown export format {fmt!r}: expected one of {FORMATS}")
        return fmt
    name = out.name.lower()
    for candidate, suffix in (("csv.gz", ".csv.gz"), ("csv", ".csv"), ("parquet", ".parquet")):
        if name.endswith(suffix):
            return candidate
    raise CellstoreError(
        f"cannot tell the format of {out} from its name: pass --format parquet|csv|csv.gz"
    )


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    try:
        rows = con.execute(f"describe {quote(table)}").fetchall()
    except duckdb.CatalogException:
        names = sorted(r[0] for r in con.execute("show tables").fetchall())
        raise CellstoreError(
            f"no table {table!r} in the warehouse (tables: {', '.join(names) or 'none'})"
        ) from None
    return [(r[0], r[1]) for r in rows]


def _where(conditions: list[str]) -> str:
    return f"where {' and '.join(conditions)}" if conditions else ""


def _feature_names(con: duckdb.DuckDBPyConnection, rows: str, n_features: int) -> list[str]:
    """Names of the features of `rows` (a FROM clause): from feature_sets when it has them.

    Without a feature_sets entry for every exported source, features are feature_0001....
    """
    tables = {r[0] for r in con.execute("show tables").fetchall()}
    sources = [r[0] for r in con.execute(f"select distinct feature_source {rows}").fetchall()]
    if FEATURE_SETS_TABLE in tables and sources:
        listed = ", ".join(literal(s) for s in sources)
        sets = con.execute(
            f"select distinct feature_names from {FEATURE_SETS_TABLE} "
            f"where feature_source in ({listed})"
        ).fetchall()
        known = con.execute(
            f"select count(distinct feature_source) from {FEATURE_SETS_TABLE} "
            f"where feature_source in ({listed})"
        ).fetchone()[0]
        if len(sets) > 1:
            raise CellstoreError(
                f"the rows to export mix feature sources with different features "
                f"({', '.join(sources)}): pick one with --feature-source"
            )
        if known == len(sources) and len(sets[0][0]) == n_features:
            return list(sets[0][0])
    return [f"feature_{i:04d}" for i in range(1, n_features + 1)]


def profile_select(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: list[tuple[str, str]],
    conditions: list[str],
) -> str:
    """SELECT turning a profile table into Metadata_ columns plus one column per feature."""
    rows = f"from {quote(table)} {_where(conditions)}"
    with_vector = f"from {quote(table)} {_where([*conditions, f'{FEATURES_COLUMN} is not null'])}"
    lengths = con.execute(f"select distinct len({FEATURES_COLUMN}) {with_vector}").fetchall()
    if len(lengths) > 1:
        raise CellstoreError(
            f"{table}: feature vectors of different lengths {sorted(r[0] for r in lengths)}; "
            "export one feature source at a time with --feature-source"
        )
    n_features = lengths[0][0] if lengths else 0
    names = _feature_names(con, rows, n_features)
    metadata = [
        f"{quote(name)} as {quote(metadata_name(name))}"
        for name, _ in columns
        if name != FEATURES_COLUMN
    ]
    features = [f"{FEATURES_COLUMN}[{i}] as {quote(name)}" for i, name in enumerate(names, start=1)]
    return f"select {', '.join(metadata + features)} {rows}"


def export_paths(out: Path, fmt: str, sources: list[str]) -> dict[str | None, Path]:
    """Where each feature source goes: `out` itself for one source, else one file per source.

    Several sources have different features (names and counts), so each gets a file of its
    own that is a complete profile matrix: `profiles.parquet` → `profiles.<source>.parquet`
    (characters other than letters, digits, `_`, `-` and `.` in a source name become `_`).
    """
    if len(sources) <= 1:
        return {sources[0] if sources else None: out}
    suffix = "." + fmt
    name = out.name
    stem, ext = (
        (name[: -len(suffix)], name[-len(suffix) :])
        if name.lower().endswith(suffix)
        else (name, "")
    )
    paths = {}
    for source in sources:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", source)
        paths[source] = out.with_name(f"{stem}.{safe}{ext}")
    return paths


def _check_filter(
    con: duckdb.DuckDBPyConnection, table: str, column: str, value: str, names: set[str]
) -> str:
    """`column = value`, or an error listing the values the table has when none match."""
    if column not in names:
        raise CellstoreError(f"{table} has no {column} column to filter on")
    values = [
        r[0]
        for r in con.execute(
            f"select distinct {quote(column)} from {quote(table)} order by 1"
        ).fetchall()
    ]
    if value not in values:
        option = "--" + column.replace("_", "-")
        listed = ", ".join(str(v) for v in values) or "none: the table is empty"
        raise CellstoreError(f"{option} {value!r} matches no row of {table} (valid: {listed})")
    return f"{quote(column)} = {literal(value)}"


def export_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    out: Path,
    *,
    fmt: str | None = None,
    force: bool = False,
    feature_source: str | None = None,
    postprocessing: str | None = None,
) -> list[ExportSummary]:
    """Write `table` to `out`; profile tables (a `features` vector) in pycytominer layout.

    A profile table holding several feature sources is written as one file per source
    (see `export_paths`). Files appear whole or not at all (written beside, then renamed);
    an existing file is replaced only with `force`. feature_source / postprocessing keep
    only those rows, and must match some.
    """
    fmt = infer_format(out, fmt)
    if not out.parent.is_dir():
        raise CellstoreError(f"cannot write {out}: folder {out.parent} does not exist")
    columns = _columns(con, table)
    names = {name for name, _ in columns}
    conditions = []
    for column, value in (("feature_source", feature_source), ("postprocessing", postprocessing)):
        if value is not None:
            conditions.append(_check_filter(con, table, column, value, names))
    is_profile = FEATURES_COLUMN in names and "feature_source" in names
    queries: dict[Path, str] = {}
    if is_profile:
        sources = [
            r[0]
            for r in con.execute(
                f"select distinct feature_source from {quote(table)} {_where(conditions)} "
                "order by 1"
            ).fetchall()
        ]
        for source, path in export_paths(out, fmt, sources).items():
            only = (
                []
                if source is None or len(sources) == 1
                else [f"feature_source = {literal(source)}"]
            )
            queries[path] = profile_select(con, table, columns, [*conditions, *only])
    else:
        queries[out] = f"select * from {quote(table)} {_where(conditions)}"
    for path in queries:
        if path.exists() and not force:
            raise CellstoreError(f"{path} already exists: pass --force to overwrite it")
    return _write_all(con, table, queries, fmt, force, is_profile)


def _write_all(
    con: duckdb.DuckDBPyConnection,
    table: str,
    queries: dict[Path, str],
    fmt: str,
    force: bool,
    is_profile: bool,
) -> list[ExportSummary]:
    """Write every file beside its target, then move them all in place (or none)."""
    options = {
        "parquet": "format parquet",
        "csv": "format csv, header true",
        "csv.gz": "format csv, header true, compression gzip",
    }[fmt]
    temporaries = {path: path.parent / f".{path.name}.{os.getpid()}.tmp" for path in queries}
    placed: list[Path] = []
    summaries = []
    try:
        for path, query in queries.items():
            temporary = temporaries[path]
            con.execute(f"copy ({query}) to {literal(str(temporary))} ({options})")
            rows = con.execute(f"select count(*) from ({query})").fetchone()[0]
            width = len(con.execute(f"select * from ({query}) limit 0").description)
            summaries.append(ExportSummary(path, fmt, rows, width, is_profile))
        for path, temporary in temporaries.items():
            if force:
                os.replace(temporary, path)
            else:
                os.link(temporary, path)  # fails if `path` appeared meanwhile: never clobbers
            placed.append(path)
    except FileExistsError as exc:
        if not force:
            for path in placed:
                path.unlink(missing_ok=True)
        raise CellstoreError(
            f"{exc.filename2 or exc.filename} already exists: pass --force to overwrite it"
        ) from None
    except duckdb.Error as exc:
        raise CellstoreError(f"cannot export {table}: {exc}") from None
    finally:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
    return summaries
