"""External well profiles: reading CellProfiler-style tables and the external_profiles stage."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from profiling_support import stage_module

from cellstore.profiling.external import FeatureTableError, read_well_features, row_problems

IMAGE_HEADER = (
    "TableNumber,ImageNumber,Image_FileName_DAPI,Image_PathName_DAPI,Image_FileName_Tubulin,"
    "Image_PathName_Tubulin,Image_FileName_Actin,Image_PathName_Actin,Image_Metadata_Plate_DAPI,"
    "Image_Metadata_Well_DAPI,Replicate,Image_Metadata_Compound,Image_Metadata_Concentration"
)


def image_row(plate: str, well: str, site: int, compound: str, concentration: str) -> str:
    week = plate.split("_")[0]
    files = [f"{well}_s{site}_w{w}AAAA.tif,{week}/{plate}" for w in (1, 2, 4)]
    return f"1,1,{','.join(files)},{plate},{well},1,{compound},{concentration}"


@pytest.fixture
def image_csv(tmp_path: Path) -> Path:
    """A BBBC021 image.csv (CRLF) for 2 plates, with 2 sites per well."""
    rows = [IMAGE_HEADER]
    for plate, week_wells in (("Week1_100", ("B02", "B03")), ("Week2_200", ("B02", "C05"))):
        for well in week_wells:
            compound, concentration = ("DMSO", "0") if well == "B02" else ("taxol", "3e-4")
            rows += [image_row(plate, well, s, compound, concentration) for s in (1, 2)]
    path = tmp_path / "BBBC021_v1_image.csv"
    path.write_bytes("\r\n".join(rows).encode())
    return path


def profile_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Image_Metadata_Plate": ["Week1_100", "Week1_100", "Week2_200", "Week2_200", "Week9_9"],
            "Image_Metadata_Well": ["B02", "b03", "B02", "C05", "B02"],
            "Cells_AreaShape_Area": [2400.0, 2500.0, 2450.0, 3100.0, 1.0],
            "Nuclei_Intensity_MeanIntensity_DAPI": [0.1, 0.2, 0.15, 0.3, 1.0],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_reads_csv_gzip_and_parquet_alike(tmp_path, suffix):
    frame = profile_frame()
    path = tmp_path / f"wells{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".csv.gz":
        path.write_bytes(gzip.compress(frame.to_csv(index=False).encode()))
    else:
        frame.to_csv(path, index=False)
    table = read_well_features(path)
    assert table.plates == frame.Image_Metadata_Plate.tolist()
    assert table.wells == ["B02", "B03", "B02", "C05", "B02"]  # well names upper-cased
    assert table.feature_names == ["Cells_AreaShape_Area", "Nuclei_Intensity_MeanIntensity_DAPI"]
    np.testing.assert_array_equal(table.values, frame.iloc[:, 2:].to_numpy())


def test_pycytominer_metadata_columns_are_keys_not_features(tmp_path):
    frame = profile_frame().rename(
        columns={"Image_Metadata_Plate": "Metadata_Plate", "Image_Metadata_Well": "Metadata_Well"}
    )
    frame["Metadata_Compound"] = "x"
    frame.to_csv(tmp_path / "w.csv", index=False)
    table = read_well_features(tmp_path / "w.csv")
    assert len(table.feature_names) == 2 and table.plates[0] == "Week1_100"


def test_unusable_tables_fail_naming_file_and_column(tmp_path):
    frame = profile_frame()
    frame["Cells_Texture"] = "high"
    frame.to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(FeatureTableError, match=r"text\.csv: feature column 'Cells_Texture'"):
        read_well_features(tmp_path / "text.csv")
    profile_frame().drop(columns="Image_Metadata_Well").to_csv(tmp_path / "nowell.csv", index=False)
    with pytest.raises(FeatureTableError, match=r"nowell\.csv: no well column"):
        read_well_features(tmp_path / "nowell.csv")
    (tmp_path / "wells.xlsx").write_text("x")
    with pytest.raises(FeatureTableError, match="expected a .csv, .csv.gz or .parquet"):
        read_well_features(tmp_path / "wells.xlsx")


def test_row_problems_name_missing_values_duplicates_and_empty_keys(tmp_path):
    frame = profile_frame()
    frame.loc[1, "Nuclei_Intensity_MeanIntensity_DAPI"] = np.nan
    frame.loc[3, ["Image_Metadata_Plate", "Image_Metadata_Well"]] = ["Week1_100", "B02"]
    frame.loc[4, "Image_Metadata_Well"] = None
    frame.to_csv(tmp_path / "w.csv", index=False)
    problems = row_problems(read_well_features(tmp_path / "w.csv"))
    assert problems[0] is None and problems[2] is None
    assert "Nuclei_Intensity_MeanIntensity_DAPI" in problems[1]
    assert problems[3] == "duplicate of row 1 (Week1_100 B02)"
    assert problems[4] == "empty plate or well"


def test_stage_accepts_known_wells_and_rejects_the_rest_with_reasons(tmp_path, image_csv):
    frame = profile_frame()
    frame.loc[3, "Cells_AreaShape_Area"] = np.inf
    frame.to_csv(tmp_path / "wells.csv", index=False)
    module = stage_module("external_profiles")
    out = module.external_profiles(
        None, profile_files=(f"mine={tmp_path / 'wells.csv'}",), image_metadata=str(image_csv)
    )
    accepted = out["external_profiles"].to_pandas()
    rejected = out["external_profiles_rejected"].to_pandas()
    wells = accepted.drop_duplicates(["plate", "well"])
    assert len(wells) + len(rejected) == len(frame)  # every input row accounted for
    assert wells[["plate", "well", "compound", "concentration", "batch"]].values.tolist() == [
        ["Week1_100", "B02", "DMSO", 0.0, "Week1"],
        ["Week1_100", "B03", "taxol", 0.0003, "Week1"],
        ["Week2_200", "B02", "DMSO", 0.0, "Week2"],
    ]
    assert rejected.source_row.tolist() == [4, 5]
    assert "missing or infinite" in rejected.reason[0]
    assert rejected.reason[1] == "plate Week9_9 well B02 is not in BBBC021_v1_image.csv"
    assert accepted.feature.tolist()[:2] == frame.columns[2:].tolist()
    assert accepted.feature_index.tolist()[:2] == [1, 2]
    assert accepted.value.tolist()[:2] == [2400.0, 0.1]


def test_stage_rejects_malformed_profile_file_settings(image_csv):
    module = stage_module("external_profiles")
    with pytest.raises(ValueError, match="is not 'feature_source=path'"):
        module.external_profiles(
            None, profile_files=("no-name.csv",), image_metadata=str(image_csv)
        )


def test_default_imports_all_ljosa_2013_wells():
    out = stage_module("external_profiles").external_profiles(None)
    long = out["external_profiles"].to_pandas()
    wells = long.drop_duplicates(["plate", "well"])
    assert out["external_profiles_rejected"].num_rows == 0
    assert len(wells) == 632 and len(long) == 632 * 516
    assert (wells.compound == "DMSO").sum() == 330
    assert wells.batch.nunique() == 10 and wells.plate.nunique() == 55
    assert set(long.feature_source) == {"cellprofiler_ljosa2013"}


def test_wells_whose_fields_disagree_on_the_treatment_are_rejected(tmp_path, image_csv):
    text = image_csv.read_bytes().decode()
    image_csv.write_bytes((text + "\r\n" + image_row("Week1_100", "B03", 3, "AZ138", "1")).encode())
    frame = profile_frame().iloc[:2]
    frame.to_csv(tmp_path / "wells.csv", index=False)
    out = stage_module("external_profiles").external_profiles(
        None, profile_files=(f"mine={tmp_path / 'wells.csv'}",), image_metadata=str(image_csv)
    )
    rejected = out["external_profiles_rejected"].to_pylist()
    assert [(r["plate"], r["well"]) for r in rejected] == [("Week1_100", "B03")]
    assert "disagree on treatment" in rejected[0]["reason"]
    assert out["external_profiles"].num_rows == 2  # one well x two features


def test_no_profile_files_give_empty_tables(image_csv):
    out = stage_module("external_profiles").external_profiles(
        None, profile_files=(), image_metadata=str(image_csv)
    )
    assert out["external_profiles"].num_rows == 0
    assert out["external_profiles"].schema.field("value").type == "double"


def test_editing_a_profile_file_rebuilds_the_stage(tmp_path, image_csv):
    import shutil

    from conftest import ToyProject
    from profiling_support import REPO

    project = ToyProject(tmp_path / "project")
    shutil.copy(REPO / "stages" / "external_profiles.py", project.root / "stages")
    profile_frame().to_csv(project.root / "wells.csv", index=False)
    project.config(
        "[stages.external_profiles]\n"
        'profile_files = ["mine=wells.csv"]\n'  # relative to the project folder
        f'image_metadata = "{image_csv}"\n'
    )
    assert project.build().results[0].status == "built"
    assert project.build().results[0].status == "up to date"
    frame = profile_frame()
    frame.loc[0, "Cells_AreaShape_Area"] = 1.0
    frame.to_csv(project.root / "wells.csv", index=False)
    assert project.build().results[0].status == "built"
    assert project.query(
        "select value from external_profiles where plate = 'Week1_100' and well = 'B02' "
        "and feature_index = 1"
    ) == [(1.0,)]
