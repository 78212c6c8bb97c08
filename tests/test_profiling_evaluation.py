"""End to end on real data: Ljosa 2013 CellProfiler well profiles through every profile stage."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from profiling_support import put, put_no_cells, run_sql_stage, run_well_profiles, stage_module

from cellstore.profiling.neighbors import evaluate_moa


@pytest.fixture(scope="module")
def ljosa() -> duckdb.DuckDBPyConnection:
    """A DuckDB holding every profile table built from the shipped Ljosa 2013 profiles."""
    from cellstore.sources.bbbc021 import read_moa

    con = duckdb.connect()
    shipped = Path(str(importlib.resources.files("cellstore") / "data" / "bbbc021"))
    put(con, "moa", pa.Table.from_pylist(read_moa(shipped)))
    external = stage_module("external_profiles").external_profiles(None)
    put(con, "external_profiles", external["external_profiles"])
    put_no_cells(con)
    run_well_profiles(con)
    normalize = stage_module("well_profiles_normalized").well_profiles_normalized
    put(con, "well_profiles_normalized", normalize(con.table("well_profiles")))
    for name in ("treatment_profiles", "moa_neighbors", "moa_accuracy"):
        run_sql_stage(con, name)
    return con


def test_protocol_counts_103_nsc_and_92_nscb_treatments(ljosa):
    rows = ljosa.sql("select postprocessing, n_nsc, n_nscb from moa_accuracy").fetchall()
    assert {r[0] for r in rows} == {"none", "standardize", "robustize", "whitening", "tvn"}
    assert {(r[1], r[2]) for r in rows} == {(103, 92)}
    assert ljosa.sql("select count(*) from well_profiles").fetchone() == (632,)


def test_whitening_reaches_the_published_level(ljosa):
    scores = dict(ljosa.sql("select postprocessing, nsc from moa_accuracy").fetchall())
    assert scores["whitening"] >= 0.92  # Ljosa et al. 2013, factor analysis: 94 %
    assert scores["whitening"] > scores["none"] + 0.3
    assert scores["tvn"] >= 0.88


def test_sql_scores_equal_the_numpy_library(ljosa):
    for postprocessing in ("none", "tvn"):
        frame = ljosa.sql(
            "select * from treatment_profiles where moa is not null and postprocessing = ?",
            params=[postprocessing],
        ).to_df()
        x = np.stack(frame.features.to_numpy())
        scores = evaluate_moa(x, frame.compound, frame.moa, frame.batch)
        nsc, nscb, mean_ap = ljosa.sql(
            "select nsc, nscb, map from moa_accuracy where postprocessing = ?",
            params=[postprocessing],
        ).fetchone()
        assert (nsc, nscb) == pytest.approx((scores.nsc, scores.nscb))
        assert mean_ap == pytest.approx(scores.map, rel=1e-5)


def test_feature_names_follow_the_file(ljosa):
    [(n, names)] = ljosa.sql("select n_features, feature_names from feature_sets").fetchall()
    assert n == 516 and names[0] == "Cells_AreaShape_Area"
