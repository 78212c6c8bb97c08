"""Exports proven with the real packages: copairs' mAP equals cellstore's, pycytominer runs.

copairs and pycytominer live in their own venv (`make interop` → .venv-interop; `make test`
makes it first). Without it the test makes it (network needed) or, off CI, skips saying so.
CELLSTORE_INTEROP_WAREHOUSE=DIR runs the same checks on another built warehouse (the demo).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from cellstore.engine.warehouse import Warehouse

VENV = REPO / ".venv-interop"
REQUIREMENTS = REPO / "tests" / "interop" / "requirements.txt"
SCRIPT = REPO / "tests" / "interop" / "check_exports.py"


@pytest.fixture(scope="module")
def interop_python() -> Path:
    python = VENV / "bin" / "python"
    if not (VENV / ".installed").is_file():
        made = subprocess.run(
            ["make", "-s", "interop"], cwd=REPO, capture_output=True, text=True, timeout=900
        )
        if made.returncode != 0:
            message = f"cannot make {VENV} (copairs, pycytominer): {made.stderr[-500:]}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    return python


@pytest.fixture(scope="module")
def warehouse(request) -> Path:
    chosen = os.environ.get("CELLSTORE_INTEROP_WAREHOUSE")
    if chosen:
        return Path(chosen)
    pipeline = request.getfixturevalue("pipeline")  # built only when needed
    assert pipeline.first.returncode == 0, pipeline.first.stdout + pipeline.first.stderr
    return pipeline.warehouse


def cellstore(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cellstore", *args], cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_copairs_map_equals_cellstore_map_and_pycytominer_runs(interop_python, warehouse, tmp_path):
    w = ["--warehouse", str(warehouse)]
    printed = cellstore("export", "treatment_profiles", "--out", "tp.parquet", *w, cwd=tmp_path)
    treatment_files = sorted(tmp_path.glob("tp.*.parquet"))
    assert len(treatment_files) >= 2 and printed.count("wrote") == len(treatment_files)
    cellstore(
        "export", "well_profiles_normalized", "--out", "wells.parquet", "--postprocessing",
        "none", "--feature-source", "handcrafted", *w, cwd=tmp_path,
    )  # fmt: skip
    done = subprocess.run(
        [str(interop_python), str(SCRIPT), *map(str, treatment_files)]
        + ["--wells", str(tmp_path / "wells.parquet")],
        capture_output=True,
        text=True,
        timeout=900,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)

    con = Warehouse(warehouse).connect(read_only=True)
    try:
        ours = {
            (source, variant): value
            for source, variant, value in con.execute(
                "select feature_source, postprocessing, map from moa_accuracy"
            ).fetchall()
        }
        n_wells = con.execute(
            "select count(*) from well_profiles_normalized "
            "where feature_source = 'handcrafted' and postprocessing = 'none'"
        ).fetchone()[0]
    finally:
        con.close()

    compared, tied = [], []
    for path, variants in result["map"].items():
        source = Path(path).name.removeprefix("tp.").removesuffix(".parquet")
        for variant, theirs in variants.items():
            mine = ours[(source, variant)]
            if theirs["float32_ties"]:
                # copairs ranks by float32 similarity; ties between a positive and a negative
                # make its order (and AP) arbitrary: no exact comparison is possible there.
                tied.append((source, variant))
                continue
            if mine is None:
                assert theirs["map"] is None, (source, variant)
            else:
                assert theirs["map"] == pytest.approx(mine, abs=1e-6), (source, variant)
            compared.append((source, variant))
    assert len(compared) >= 8 and len(compared) + len(tied) == len(ours), (compared, tied)
    assert any(ours[key] is not None for key in compared)

    steps = result["pycytominer"]
    assert steps["rows"] == steps["normalized_rows"] == steps["selected_rows"] == n_wells
    assert steps["normalized_columns"] == steps["raw_columns"]  # every feature inferred
    assert steps["max_abs_mean"] < 1e-3 and 0.99 < steps["std_range"][1] <= 1.0 + 1e-6
    assert steps["metadata_equal"]
    kept = [c for c in steps["selected_columns"] if not c.startswith("Metadata_")]
    assert 0 < len(kept) <= len(steps["raw_columns"])
    assert set(steps["selected_columns"]) <= set(steps["raw_columns"])
