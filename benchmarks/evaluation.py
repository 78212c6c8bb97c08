"""The project's profiling pipeline downstream of a feature table, outside a build.

Benchmarks use it to score features a warehouse does not hold (a SimCLR checkpoint's
embeddings) or to skip stages they do not need (the handcrafted path without SimCLR):
`build_well_profiles` with a declaration of schemas/, then `stages/well_profiles_normalized.py`
and sql/treatment_profiles.sql, sql/moa_neighbors.sql, sql/moa_accuracy.sql in an in-memory
DuckDB. The rows are those `cellstore sql "select * from moa_accuracy"` shows for a
warehouse built with the same features and settings.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from cellstore.engine.warehouse import offline_connection
from cellstore.profiling.feature_sources import FeatureSource, declared_sources
from cellstore.profiling.well_profiles import build_well_profiles

REPO = Path(__file__).resolve().parents[1]
SQL_STAGES = ("treatment_profiles", "moa_neighbors", "moa_accuracy")
METRICS = ("nsc", "nscb", "drop", "map")
ACCURACY_COLUMNS = ("feature_source", "postprocessing", *METRICS, "n_nsc", "n_nscb", "map_nscb")


def stage_function(name: str) -> Callable[..., Any]:
    """The function of stages/<name>.py (the @stage decorator returns it unchanged)."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def declared_source(table: str) -> FeatureSource:
    """The feature-source declaration of `table` in the project's schemas/."""
    found = [s for s in declared_sources(REPO / "schemas") if s.table == table]
    if len(found) != 1:
        raise ValueError(f"schemas/ declares {len(found)} feature sources on {table}, not 1")
    return found[0]


def normalize_settings(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The settings of the warehouse's last built well_profiles_normalized run ({}: defaults)."""
    row = con.execute(
        "select settings from cellstore_meta.runs where stage = 'well_profiles_normalized' "
        "and status = 'built' and settings is not null order by started_at desc limit 1"
    ).fetchone()
    if row is None:
        return {}
    settings = json.loads(row[0])
    if isinstance(settings.get("variants"), list):
        settings["variants"] = tuple(settings["variants"])
    return settings


def warehouse_accuracy(con: duckdb.DuckDBPyConnection, sources: tuple[str, ...]) -> list[dict]:
    """The warehouse's own moa_accuracy rows of `sources`."""
    names = ", ".join(f"'{s}'" for s in sources)
    cursor = con.execute(
        f"select {', '.join(ACCURACY_COLUMNS)} from moa_accuracy "
        f"where feature_source in ({names}) order by feature_source, postprocessing"
    )
    return [dict(zip(ACCURACY_COLUMNS, row, strict=True)) for row in cursor.fetchall()]


class Evaluator:
    """well_profiles → moa_accuracy on an in-memory DuckDB, with the project's own code.

    con: a warehouse connection to copy `images` and `moa` from (read once).
    settings: well_profiles_normalized's settings ({} for its defaults).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, settings: dict[str, Any]) -> None:
        self.ev = offline_connection()
        self.settings = settings
        self.normalize = stage_function("well_profiles_normalized")
        self.sql = {name: (REPO / "sql" / f"{name}.sql").read_text() for name in SQL_STAGES}
        # what build_well_profiles reads of images and moa
        images = "select plate, well, batch, compound, concentration from images"
        self.put("images", con.sql(images).to_arrow_table())
        self.put("moa", con.sql("select compound, concentration, moa from moa").to_arrow_table())

    def put(self, name: str, table: pa.Table) -> None:
        self.ev.register("_incoming", table)
        self.ev.execute(f"create or replace table {name} as select * from _incoming")
        self.ev.unregister("_incoming")

    def well_profiles(self, cells: pa.Table | duckdb.DuckDBPyRelation, table: str) -> pa.Table:
        """well_profiles rows of a feature table shaped like the project's `table`.

        cells: an Arrow table, or a relation of any connection (copied here first).
        """
        if isinstance(cells, duckdb.DuckDBPyRelation):
            cells = cells.to_arrow_table()
        self.ev.register("_cells", cells)
        try:
            built = build_well_profiles(
                self.ev.table("images"),
                self.ev.table("moa"),
                {table: self.ev.table("_cells")},
                [declared_source(table)],
            )
        finally:
            self.ev.unregister("_cells")
        return built["well_profiles"]

    def accuracy(self, wells: pa.Table) -> list[dict]:
        """moa_accuracy rows of well_profiles-shaped `wells`."""
        self.ev.register("_wells", wells)
        try:
            normalized = self.normalize(self.ev.table("_wells"), **self.settings)
        finally:
            self.ev.unregister("_wells")
        self.put("well_profiles_normalized", normalized)
        for name in SQL_STAGES:
            self.ev.execute(f"create or replace table {name} as {self.sql[name]}")
        cursor = self.ev.execute(
            f"select {', '.join(ACCURACY_COLUMNS)} from moa_accuracy "
            "order by feature_source, postprocessing"
        )
        return [dict(zip(ACCURACY_COLUMNS, row, strict=True)) for row in cursor.fetchall()]
