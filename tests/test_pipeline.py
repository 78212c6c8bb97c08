"""The repository pipeline end to end: `cellstore build` from raw images to MoA accuracy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import PIPELINE_CONFIG, PIPELINE_PLATES, REPO

from cellstore.engine.warehouse import Warehouse

PLATES = PIPELINE_PLATES


def cellstore(*args: str, warehouse) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cellstore", *args, "--warehouse", str(warehouse)]
        + ["--config", str(PIPELINE_CONFIG)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def built(pipeline):
    return pipeline.source, pipeline.warehouse, pipeline.first


def query(warehouse, sql: str) -> list[tuple]:
    con = Warehouse(warehouse).connect(read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_every_stage_builds_from_raw_images(built):
    source, warehouse, first = built
    assert first.returncode == 0, first.stdout + first.stderr
    plates = query(warehouse, "select distinct plate from images order by 1")
    assert [p[0] for p in plates] == PLATES
    n_nuclei, n_crops, n_features = query(
        warehouse,
        "select (select count(*) from nuclei), (select count(*) from crops), "
        "(select count(*) from cell_features)",
    )[0]
    assert n_nuclei > 1000 and n_crops == n_nuclei == n_features


def test_accuracy_for_every_feature_source_and_variant(built):
    _, warehouse, _ = built
    rows = query(
        warehouse,
        "select feature_source, postprocessing, nsc, nscb, drop, n_nsc from moa_accuracy",
    )
    sources = {r[0] for r in rows}
    assert len(sources) >= 2  # the external Ljosa 2013 profiles and the handcrafted features
    variants = {r[1] for r in rows}
    assert {"none", "whitening", "tvn"} <= variants
    for feature_source, variant, nsc, nscb, drop, n_nsc in rows:
        assert 0.0 <= nsc <= 1.0 and n_nsc > 0, (feature_source, variant)
        if nscb is not None:
            assert drop == pytest.approx(nsc - nscb, abs=1e-9)


def test_second_build_does_nothing_and_checks_pass(built):
    source, warehouse, _ = built
    again = cellstore("build", "--source", str(source), warehouse=warehouse)
    assert again.returncode == 0, again.stderr
    assert "built" not in again.stdout.replace("up to date", "")
    check = cellstore("check", "--format", "json", warehouse=warehouse)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr
    results = [json.loads(line) for line in check.stdout.splitlines() if line.strip()]
    assert results and not [r for r in results if r["severity"] == "error" and not r["passed"]]


def test_benchmark_evaluation_reproduces_the_warehouse_accuracy(built):
    # benchmarks/evaluation.py scores features outside a build (bench_accuracy's
    # handcrafted path, bench_simclr's checkpoints): it must give moa_accuracy's own rows.
    from benchmarks.evaluation import Evaluator, normalize_settings, warehouse_accuracy

    _, warehouse, _ = built
    con = Warehouse(warehouse).connect(read_only=True)
    try:
        evaluator = Evaluator(con, normalize_settings(con))
        wells = evaluator.well_profiles(con.table("cell_features"), "cell_features")
        mine = evaluator.accuracy(wells)
        theirs = warehouse_accuracy(con, ("handcrafted",))
    finally:
        con.close()
    assert len(theirs) == 5 and any(row["nsc"] is not None for row in theirs)
    assert mine == theirs
