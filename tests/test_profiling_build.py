"""Profile stages under the real runner: Ljosa 2013 profiles built, checked, reported, exported."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from conftest import ToyProject
from profiling_support import REPO

PROFILE_STAGES = ("external_profiles", "well_profiles", "well_profiles_normalized")
PROFILE_SQL = (
    "treatment_profiles",
    "moa_neighbors",
    "moa_accuracy",
)
PROFILE_TABLES = (
    "external_profiles",
    "external_profiles_rejected",
    "well_profiles_normalized",
    "well_profiles",
    "feature_sets",
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

# Stand-ins for the image stages: one field per Ljosa well, 4 cells per field with three
# features that follow the MoA (so the handcrafted source flows through the same stages).
IMAGES_STAGE = '''
import importlib.resources
from pathlib import Path

import pyarrow as pa
from cellstore.profiling.external import read_well_features
from cellstore.stage import stage

@stage
def images():
    """One field per Ljosa 2013 well. Grain: image_id."""
    import importlib.util

    path = Path(__file__).with_name("external_profiles.py")  # the sibling stage file
    spec = importlib.util.spec_from_file_location("external_profiles_stage", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    well_treatments = module.well_treatments
    folder = Path(str(importlib.resources.files("cellstore") / "data" / "bbbc021"))
    treatments = well_treatments(folder / "BBBC021_v1_image.csv.gz")
    table = read_well_features(folder / "ljosa_jbiomolscreen_2013_per_well_mean.csv.gz")
    rows = []
    for plate, well in zip(table.plates, table.wells):
        compound, concentration, batch = treatments[(plate, well)]
        rows.append({"image_id": f"{plate}_{well}_s1", "plate": plate, "well": well,
                     "batch": batch, "compound": compound, "concentration": concentration})
    return pa.Table.from_pylist(rows)
'''

CELL_FEATURES_STAGE = '''
import numpy as np
import pyarrow as pa
from cellstore.stage import stage

@stage
def cell_features(images):
    """4 cells per field, 3 float32 features. Grain: cell_id."""
    fields = images.order("image_id").to_arrow_table().to_pylist()
    rng = np.random.default_rng(0)
    rows = []
    for field in fields:
        shift = hash(field["compound"]) % 7
        for k in range(4):
            values = rng.normal(size=3) + shift
            rows.append({"image_id": field["image_id"], "cell_id": f"{field['image_id']}_{k}",
                         "plate": field["plate"], "well": field["well"],
                         "Nuclei_AreaShape_Area": values[0], "Cells_Intensity_Mean": values[1],
                         "Cytoplasm_Texture_Contrast": values[2]})
    table = pa.Table.from_pylist(rows)
    for name in ("Nuclei_AreaShape_Area", "Cells_Intensity_Mean", "Cytoplasm_Texture_Contrast"):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, table[name].cast(pa.float32()))
    return table
'''


# The stand-in's contract: it declares the feature source `handcrafted`, so well_profiles
# picks it up (with external_profiles, declared by the repo's own contract).
CELL_FEATURES_SCHEMA = """
table: cell_features
feature_source: handcrafted
grain: [cell_id]
columns:
  - {name: image_id, type: VARCHAR, role: key}
  - {name: cell_id, type: VARCHAR, role: key}
  - {name: plate, type: VARCHAR, role: meta}
  - {name: well, type: VARCHAR, role: meta}
column_groups:
  - {pattern: "^(Cells|Cytoplasm|Nuclei)_", type: FLOAT, role: feature, checks: [vector]}
"""


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
    project.py("images", IMAGES_STAGE)
    project.py("cell_features", CELL_FEATURES_STAGE)
    (project.root / "schemas" / "cell_features.yml").write_text(CELL_FEATURES_SCHEMA)
    result = project.build()
    failure = result.first_failure()
    assert failure is None, failure.error
    return project


def test_build_publishes_every_profile_table_and_passes_its_checks(built):
    rows = dict(built.query("select feature_source, n_features from feature_sets"))
    assert rows == {"cellprofiler_ljosa2013": 516, "handcrafted": 3}
    wells = dict(built.query("select feature_source, count(*) from well_profiles group by all"))
    assert wells == {"cellprofiler_ljosa2013": 632, "handcrafted": 632}
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
    # accuracy; per source a confusion matrix, a map and batch panels; cells per well
    assert len(pngs) == 1 + 2 * 3 + 1
    for png in pngs:
        assert f'src="{png.name}"' in page
        assert matplotlib.image.imread(png).ndim == 3


def test_cli_export_names_features_from_the_feature_set(built, tmp_path):
    out = tmp_path / "tvn.csv.gz"
    built.cli(
        "export",
        "treatment_profiles",
        "--out",
        str(out),
        "--postprocessing",
        "tvn",
        "--feature-source",
        "cellprofiler_ljosa2013",
        check=True,
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
