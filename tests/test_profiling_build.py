"""Profile stages under the real runner: Ljosa 2013 profiles built, checked, reported, exported."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from conftest import ToyProject
from profiling_support import REPO

PROFILE_STAGES = ("external_profiles", "well_profiles_normalized")
PROFILE_SQL = (
    "well_profiles",
    "feature_sets",
    "treatment_profiles",
    "moa_neighbors",
    "moa_accuracy",
)
PROFILE_TABLES = (
    "external_profiles",
    "external_profiles_rejected",
    "well_profiles_normalized",
    *PROFILE_SQL,
)

MOA_STAGE = '''
import importlib.resources
from pathlib import Path

import pyarrow as pa
from cellstore.sources.bbbc021 import read_moa
from cellstore.stage import stage

@stage
def moa():
    """The shipped BBBC021 MoA annotation. Grain: (compound, concentration)."""
    folder = Path(str(importlib.resources.files("cellstore") / "data" / "bbbc021"))
    return pa.Table.from_pylist(read_moa(folder))
'''


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> ToyProject:
    """A project of the repo's profile stages and contracts (plus a moa stage), built."""
    project = ToyProject(tmp_path_factory.mktemp("profiles") / "project")
    for name in PROFILE_STAGES:
        shutil.copy(REPO / "stages" / f"{name}.py", project.root / "stages")
    for name in PROFILE_SQL:
        shutil.copy(REPO / "sql" / f"{name}.sql", project.root / "sql")
    (project.root / "schemas").mkdir()
    for table in PROFILE_TABLES:
        shutil.copy(REPO / "schemas" / f"{table}.yml", project.root / "schemas")
    project.py("moa", MOA_STAGE)
    result = project.build()
    failure = result.first_failure()
    assert failure is None, failure.error
    return project


def test_build_publishes_every_profile_table_and_passes_its_checks(built):
    rows = dict(built.query("select feature_source, n_features from feature_sets"))
    assert rows == {"cellprofiler_ljosa2013": 516}
    failed = built.query(
        "select table_name, check_name, severity from cellstore_meta.check_results where not passed"
    )
    assert [f for f in failed if f[2] == "error"] == []
    checked = {r[0] for r in built.query("select table_name from cellstore_meta.check_results")}
    assert set(PROFILE_TABLES) <= checked


def test_ljosa_accuracy_through_the_warehouse(built):
    scores = {
        r[0]: r[1:]
        for r in built.query(
            "select postprocessing, nsc, nscb, n_nsc, n_nscb from moa_accuracy "
            "where feature_source = 'cellprofiler_ljosa2013'"
        )
    }
    assert scores["whitening"][0] >= 0.92
    assert {s[2:] for s in scores.values()} == {(103, 92)}


def test_cli_report_writes_html_and_decodable_pngs(built, tmp_path):
    import matplotlib.image

    out = tmp_path / "report"
    done = built.cli("report", "--out", str(out), check=True)
    assert "plots" in done.stdout
    page = (out / "index.html").read_text()
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 4  # accuracy, confusion, map, batches (no cell counts: a note)
    for png in pngs:
        assert f'src="{png.name}"' in page
        assert matplotlib.image.imread(png).ndim == 3
    assert "No feature source here counts cells" in page


def test_cli_export_names_features_from_the_feature_set(built, tmp_path):
    out = tmp_path / "tvn.csv.gz"
    built.cli(
        "export", "treatment_profiles", "--out", str(out), "--postprocessing", "tvn", check=True
    )
    frame = pd.read_csv(out)
    assert len(frame) == 103
    assert list(frame.columns[:8]) == [
        "Metadata_FeatureSource",
        "Metadata_Postprocessing",
        "Metadata_Compound",
        "Metadata_Concentration",
        "Metadata_MoA",
        "Metadata_Batch",
        "Metadata_Count_Wells",
        "Cells_AreaShape_Area",
    ]
    assert frame.shape[1] == 7 + 516
