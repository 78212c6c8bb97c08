"""`cellstore export`: pycytominer layout, formats, atomic no-clobber writes, time travel."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import ToyProject

from cellstore.engine.warehouse import Warehouse
from cellstore.errors import CellstoreError
from cellstore.profiling.export import export_table, infer_format, metadata_name

PROFILES = '''
import pyarrow as pa
from cellstore.stage import stage

@stage
def treatment_profiles(*, scale: float = 1.0):
    """Two treatments x two variants of a 3-feature source. Grain: (source, variant, treatment)."""
    rows = []
    treatments = (("taxol", "Microtubule stabilizers"), ("AZ138", None))
    for variant in ("none", "tvn"):
        for i, (compound, moa) in enumerate(treatments):
            rows.append({
                "feature_source": "toy", "postprocessing": variant, "compound": compound,
                "concentration": 0.3 * (i + 1), "moa": moa, "batch": "Week1,Week2",
                "n_wells": 3, "features": [scale * (i + 1), -1.5, 0.25],
            })
    table = pa.Table.from_pylist(rows)
    return table.set_column(7, "features", table["features"].cast(pa.list_(pa.float32())))
'''

FEATURE_SETS = """
select 'toy' as feature_source, 3 as n_features,
       ['Cells_AreaShape_Area', 'Nuclei_Texture_X', 'Cytoplasm_Y'] as feature_names
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> ToyProject:
    """A warehouse with two snapshots of treatment_profiles (scale 1, then scale 10)."""
    toy = ToyProject(tmp_path_factory.mktemp("export") / "project")
    toy.py("treatment_profiles", PROFILES)
    toy.sql("feature_sets", FEATURE_SETS)
    toy.sql("compounds", "select distinct compound from treatment_profiles order by compound\n")
    assert toy.build().ok
    toy.config("[stages.treatment_profiles]\nscale = 10.0\n")
    assert toy.build().ok
    return toy


def connect(project: ToyProject, at: int | None = None):
    return Warehouse(project.warehouse_dir).connect(read_only=True, snapshot=at)


def first_snapshot_of(project: ToyProject, table: str) -> int:
    rows = project.query(
        "select snapshot_id, changes from ducklake_snapshots('lake') order by snapshot_id"
    )
    return next(s for s, changes in rows if table in str(changes))


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".csv.gz"])
def test_profiles_round_trip_in_pycytominer_layout(project, tmp_path, suffix):
    out = tmp_path / f"profiles{suffix}"
    (summary,) = export_table(connect(project), "treatment_profiles", out)
    frame = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert summary.is_profile and summary.rows == len(frame) == 4
    assert list(frame.columns) == [
        "Metadata_FeatureSource",
        "Metadata_Postprocessing",
        "Metadata_Compound",
        "Metadata_Concentration",
        "Metadata_MoA",
        "Metadata_Batch",
        "Metadata_Count_Wells",
        "Cells_AreaShape_Area",
        "Nuclei_Texture_X",
        "Cytoplasm_Y",
    ]
    taxol = frame[(frame.Metadata_Compound == "taxol") & (frame.Metadata_Postprocessing == "tvn")]
    assert taxol[["Cells_AreaShape_Area", "Nuclei_Texture_X", "Cytoplasm_Y"]].values.tolist() == [
        [10.0, -1.5, 0.25]
    ]
    assert taxol.Metadata_Batch.item() == "Week1,Week2"
    assert frame.Metadata_MoA.isna().sum() == 2


def test_filters_keep_one_variant(project, tmp_path):
    out = tmp_path / "tvn.parquet"
    (summary,) = export_table(connect(project), "treatment_profiles", out, postprocessing="tvn")
    assert summary.rows == 2
    assert set(pq.read_table(out).column("Metadata_Postprocessing").to_pylist()) == {"tvn"}
    with pytest.raises(CellstoreError, match="compounds has no postprocessing column"):
        export_table(connect(project), "compounds", tmp_path / "c.csv", postprocessing="tvn")


def test_a_filter_matching_nothing_is_an_error_listing_the_valid_values(project, tmp_path):
    out = tmp_path / "none.parquet"
    with pytest.raises(CellstoreError, match=r"--postprocessing 'tvm' matches no row.*none, tvn"):
        export_table(connect(project), "treatment_profiles", out, postprocessing="tvm")
    with pytest.raises(CellstoreError, match=r"--feature-source 'toys' .*\(valid: toy\)"):
        export_table(connect(project), "treatment_profiles", out, feature_source="toys")
    assert list(tmp_path.iterdir()) == []
    failed = project.cli("export", "treatment_profiles", "--out", str(out), "--feature-source", "x")
    assert failed.returncode == 1 and "valid: toy" in failed.stderr
    assert "Traceback" not in failed.stderr and not out.exists()


def test_existing_file_is_kept_without_force_and_replaced_with_it(project, tmp_path):
    out = tmp_path / "profiles.parquet"
    out.write_text("precious")
    with pytest.raises(CellstoreError, match="already exists: pass --force"):
        export_table(connect(project), "treatment_profiles", out)
    assert out.read_text() == "precious"
    export_table(connect(project), "treatment_profiles", out, force=True)
    assert pq.read_table(out).num_rows == 4
    assert [p.name for p in tmp_path.iterdir()] == ["profiles.parquet"]  # no temporary left


def test_failed_export_leaves_no_file(project, tmp_path):
    out = tmp_path / "nothing.parquet"
    with pytest.raises(CellstoreError, match="no table 'nope'.*treatment_profiles"):
        export_table(connect(project), "nope", out)
    assert list(tmp_path.iterdir()) == []


def test_at_snapshot_exports_the_old_version(project, tmp_path):
    old = first_snapshot_of(project, "treatment_profiles")
    out = tmp_path / "old.csv"
    export_table(connect(project, at=old), "treatment_profiles", out)
    frame = pd.read_csv(out)
    assert sorted(frame.Cells_AreaShape_Area.unique()) == [1.0, 2.0]


def test_other_tables_are_written_as_stored(project, tmp_path):
    out = tmp_path / "compounds.csv"
    (summary,) = export_table(connect(project), "compounds", out)
    assert not summary.is_profile
    assert pd.read_csv(out).compound.tolist() == ["AZ138", "taxol"]


def test_format_comes_from_the_name_or_the_option():
    assert infer_format(Path("a.csv.gz"), None) == "csv.gz"
    assert infer_format(Path("a.PARQUET"), None) == "parquet"
    assert infer_format(Path("a.txt"), "csv") == "csv"
    with pytest.raises(CellstoreError, match="cannot tell the format"):
        infer_format(Path("a.txt"), None)
    with pytest.raises(CellstoreError, match="unknown export format 'xlsx'"):
        infer_format(Path("a.csv"), "xlsx")
    assert metadata_name("n_cells") == "Metadata_Count_Cells"
    assert metadata_name("image_id") == "Metadata_ImageId"


def test_cli_exports_and_refuses_to_overwrite(project, tmp_path):
    out = tmp_path / "cli.csv.gz"
    args = ["export", "treatment_profiles", "--out", str(out), "--feature-source", "toy"]
    done = project.cli(*args, check=True)
    assert "wrote 4 rows" in done.stdout
    assert len(pd.read_csv(out)) == 4
    again = project.cli(*args)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert project.cli(*args, "--force").returncode == 0


TWO_SOURCES = '''
import pyarrow as pa
from cellstore.stage import stage

@stage
def treatment_profiles():
    """Two sources with different feature counts. Grain: (source, compound)."""
    rows = [
        {"feature_source": "small", "compound": "taxol", "moa": "M", "features": [1.0, 2.0]},
        {"feature_source": "small", "compound": "AZ138", "moa": "N", "features": [3.0, 4.0]},
        {"feature_source": "wide/set", "compound": "taxol", "moa": "M", "features": [5.0, 6, 7]},
    ]
    return pa.Table.from_pylist(rows)
'''


def test_several_feature_sources_give_one_complete_file_each(tmp_path):
    toy = ToyProject(tmp_path / "two")
    toy.py("treatment_profiles", TWO_SOURCES)
    assert toy.build().ok
    out = tmp_path / "out" / "profiles.csv.gz"
    out.parent.mkdir()
    summaries = export_table(connect(toy), "treatment_profiles", out)
    assert [s.path.name for s in summaries] == [
        "profiles.small.csv.gz",
        "profiles.wide_set.csv.gz",
    ]
    assert sorted(p.name for p in out.parent.iterdir()) == [s.path.name for s in summaries]
    small = pd.read_csv(out.parent / "profiles.small.csv.gz")
    wide = pd.read_csv(out.parent / "profiles.wide_set.csv.gz")
    assert small.shape == (2, 3 + 2) and wide.shape == (1, 3 + 3)
    assert wide.iloc[0, -3:].tolist() == [5.0, 6.0, 7.0] and not small.isna().any().any()
    # One source selected: exactly the --out name.
    (one,) = export_table(connect(toy), "treatment_profiles", out, feature_source="small")
    assert one.path == out and one.rows == 2
    # An existing per-source file blocks the whole export: nothing is half-written.
    with pytest.raises(CellstoreError, match="profiles.small.csv.gz already exists"):
        export_table(connect(toy), "treatment_profiles", out)
