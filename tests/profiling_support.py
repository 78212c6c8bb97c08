"""Helpers for the profiling tests: run the repo's SQL and Python stages on plain DuckDB."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import duckdb
import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]


def stage_module(name: str) -> ModuleType:
    """Import stages/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def put(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    """Store an Arrow table as DuckDB table `name` (replacing it)."""
    con.register("_incoming", table)
    con.execute(f"create or replace table {name} as select * from _incoming")
    con.unregister("_incoming")


def run_sql_stage(con: duckdb.DuckDBPyConnection, name: str) -> pa.Table:
    """Run sql/<name>.sql, store its result as table `name`, return it."""
    text = (REPO / "sql" / f"{name}.sql").read_text()
    con.execute(f"create or replace table {name} as {text}")
    return con.table(name).to_arrow_table()


def treatment_table(
    features: np.ndarray,
    compounds: list[str],
    concentrations: list[float],
    moas: list[str | None],
    batches: list[str],
    *,
    feature_source: str = "toy",
    postprocessing: str = "none",
) -> pa.Table:
    """A treatment_profiles-shaped table, one row per treatment."""
    n = len(compounds)
    return pa.table(
        {
            "feature_source": [feature_source] * n,
            "postprocessing": [postprocessing] * n,
            "compound": compounds,
            "concentration": pa.array(concentrations, pa.float64()),
            "moa": pa.array(moas, pa.string()),
            "batch": batches,
            "n_wells": pa.array([1] * n, pa.int64()),
            "features": pa.array([row.tolist() for row in features], pa.list_(pa.float32())),
        }
    )
