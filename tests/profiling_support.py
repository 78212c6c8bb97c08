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


def run_well_profiles(con: duckdb.DuckDBPyConnection) -> dict[str, pa.Table]:
    """Run stages/well_profiles.py on `con`'s tables; store and return both outputs."""
    from cellstore.profiling.feature_sources import declared_sources
    from cellstore.profiling.well_profiles import build_well_profiles

    sources = declared_sources(REPO / "schemas")
    tables = {s.table: con.table(s.table) for s in sources}
    built = build_well_profiles(con.table("images"), con.table("moa"), tables, sources)
    for name, table in built.items():
        put(con, name, table)
    return built


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


def synthetic_wells(seed: int = 0, n_features: int = 16) -> pa.Table:
    """well_profiles-shaped wells with a planted MoA signal and a batch shift.

    2 feature sources; 3 Weeks x 2 plates; per plate 4 DMSO wells and one well of each of
    the 4 treatments of that Week (compound c of every MoA sits in Week c + 1 only), so
    NSCB neighbours come from other Weeks. features = MoA centre + Week shift + noise.
    """
    rng = np.random.default_rng(seed)
    moas = ["Actin disruptors", "DNA damage", "Eg5 inhibitors", "Epithelial"]
    centres = {moa: rng.normal(size=n_features) * 3 for moa in moas}
    rows = []
    for source in ("cells_a", "cells_b"):
        for week in (1, 2, 3):
            shift = rng.normal(size=n_features) * 4
            for plate in (f"Week{week}_{week}01", f"Week{week}_{week}02"):
                wells = [("DMSO", 0.0, "DMSO")] * 4 + [
                    (f"{moa[:3]}-{week}", 1.0, moa) for moa in moas
                ]
                for i, (compound, concentration, moa) in enumerate(wells):
                    signal = np.zeros(n_features) if moa == "DMSO" else centres[moa]
                    features = signal + shift + rng.normal(size=n_features) * 1.5
                    rows.append(
                        {
                            "feature_source": source,
                            "plate": plate,
                            "well": f"W{i:02d}",
                            "batch": f"Week{week}",
                            "compound": compound,
                            "concentration": concentration,
                            "moa": moa,
                            "n_cells": int(rng.integers(50, 400)),
                            "features": features.astype(np.float32).tolist(),
                        }
                    )
    table = pa.Table.from_pylist(rows)
    return table.set_column(8, "features", table["features"].cast(pa.list_(pa.float32())))


def evaluated(con: duckdb.DuckDBPyConnection, wells: pa.Table) -> duckdb.DuckDBPyConnection:
    """Put `wells` as well_profiles and build every table downstream of it into `con`."""
    put(con, "well_profiles", wells)
    normalize = stage_module("well_profiles_normalized").well_profiles_normalized
    put(con, "well_profiles_normalized", normalize(con.table("well_profiles")))
    for name in ("treatment_profiles", "moa_neighbors", "moa_accuracy"):
        run_sql_stage(con, name)
    return con


def put_no_cells(con: duckdb.DuckDBPyConnection) -> None:
    """Empty `cell_features`, `embeddings` and `images` tables (external sources only)."""
    put_no_embeddings(con)
    put(
        con,
        "cell_features",
        pa.table(
            {
                "image_id": pa.array([], pa.string()),
                "cell_id": pa.array([], pa.string()),
                "plate": pa.array([], pa.string()),
                "well": pa.array([], pa.string()),
                "Nuclei_AreaShape_Area": pa.array([], pa.float32()),
            }
        ),
    )
    put(
        con,
        "images",
        pa.table(
            {
                "image_id": pa.array([], pa.string()),
                "plate": pa.array([], pa.string()),
                "well": pa.array([], pa.string()),
                "batch": pa.array([], pa.string()),
                "compound": pa.array([], pa.string()),
                "concentration": pa.array([], pa.float64()),
            }
        ),
    )


def no_embeddings() -> pa.Table:
    """An empty `embeddings` table (a warehouse whose SimCLR stages have not run)."""
    from cellstore.ssl.tables import embeddings_schema

    return embeddings_schema().empty_table()


def put_no_embeddings(con: duckdb.DuckDBPyConnection) -> None:
    put(con, "embeddings", no_embeddings())
