"""Export a warehouse table to Parquet or CSV in pycytominer conventions, written atomically."""

from __future__ import annotations

import os
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


def export_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    out: Path,
    *,
    fmt: str | None = None,
    force: bool = False,
    feature_source: str | None = None,
    postprocessing: str | None = None,
) -> ExportSummary:
    """Write `table` to `out`; profile tables (a `features` vector) in pycytominer layout.

    The file appears whole or not at all (written beside it, then renamed); an existing
    file is replaced only with `force`. feature_source / postprocessing keep only those rows.
    """
    fmt = infer_format(out, fmt)
    if out.exists() and not force:
        raise CellstoreError(f"{out} already exists: pass --force to overwrite it")
    if not out.parent.is_dir():
        raise CellstoreError(f"cannot write {out}: folder {out.parent} does not exist")
    columns = _columns(con, table)
    names = {name for name, _ in columns}
    conditions = []
    for column, value in (("feature_source", feature_source), ("postprocessing", postprocessing)):
        if value is None:
            continue
        if column not in names:
            raise CellstoreError(f"{table} has no {column} column to filter on")
        conditions.append(f"{column} = {literal(value)}")
    is_profile = FEATURES_COLUMN in names and "feature_source" in names
    if is_profile:
        query = profile_select(con, table, columns, conditions)
    else:
        query = f"select * from {quote(table)} {_where(conditions)}"
    options = {
        "parquet": "format parquet",
        "csv": "format csv, header true",
        "csv.gz": "format csv, header true, compression gzip",
    }[fmt]
    temporary = out.parent / f".{out.name}.{os.getpid()}.tmp"
    try:
        con.execute(f"copy ({query}) to {literal(str(temporary))} ({options})")
        rows = con.execute(f"select count(*) from ({query})").fetchone()[0]
        width = len(con.execute(f"select * from ({query}) limit 0").description)
        if force:
            os.replace(temporary, out)
        else:
            os.link(temporary, out)  # fails if `out` appeared meanwhile: never clobbers
    except FileExistsError:
        raise CellstoreError(f"{out} already exists: pass --force to overwrite it") from None
    except duckdb.Error as exc:
        raise CellstoreError(f"cannot export {table} to {out}: {exc}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return ExportSummary(path=out, format=fmt, rows=rows, columns=width, is_profile=is_profile)
