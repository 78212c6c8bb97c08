"""Feature sources by declaration: schema files → FeatureSource, and well profiles from them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from profiling_support import REPO, put

from cellstore.profiling.feature_sources import (
    DeclarationError,
    FeatureSource,
    declared_sources,
)
from cellstore.profiling.well_profiles import build_well_profiles

EMBEDDINGS_SCHEMA = """
table: embeddings
feature_source: {source_column: model}
grain: [cell_id, model]
columns:
  - {name: cell_id, type: VARCHAR, role: key}
  - {name: image_id, type: VARCHAR, role: key}
  - {name: plate, type: VARCHAR, role: meta}
  - {name: well, type: VARCHAR, role: meta}
  - {name: model, type: VARCHAR, role: key, description: simclr run id or simclr_untrained}
  - {name: embedding, type: "FLOAT[]", role: vector, checks: [vector]}
"""


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yml").write_text(textwrap.dedent(text))


def test_the_repo_declares_handcrafted_and_the_external_files():
    sources = {s.table: s for s in declared_sources(REPO / "schemas")}
    assert set(sources) == {"cell_features", "embeddings", "external_profiles"}
    simclr = sources["embeddings"]
    assert (simclr.source_column, simclr.grain, simclr.layout, simclr.vector) == (
        "model",
        "cell",
        "vector",
        "embedding",
    )
    handcrafted = sources["cell_features"]
    assert (handcrafted.name, handcrafted.grain, handcrafted.layout) == (
        "handcrafted",
        "cell",
        "wide",
    )
    assert handcrafted.patterns == ("^(Cells|Cytoplasm|Nuclei)_",)
    external = sources["external_profiles"]
    assert (external.source_column, external.grain, external.layout) == (
        "feature_source",
        "well",
        "long",
    )


def test_a_vector_column_makes_a_vector_source_split_by_a_column(tmp_path):
    write(tmp_path, "embeddings", EMBEDDINGS_SCHEMA)
    [source] = declared_sources(tmp_path)
    assert source == FeatureSource(
        table="embeddings", source_column="model", layout="vector", vector="embedding"
    )
    assert source.label == "embeddings (by model)"


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ("feature_source: {name: x, colour: red}", r"unknown key\(s\) \['colour'\]"),
        ("feature_source: {name: x, source_column: model}", "exactly one of name or source_column"),
        ("feature_source: {name: x, grain: plate}", "grain must be one of"),
        ("feature_source: {name: x, layout: long}", "a long source is well-level"),
        ("feature_source: {name: x, vector: nothing}", r"declares no column\(s\) \['nothing'\]"),
        ("feature_source: {name: x, grain: well}", r"no column\(s\) \['batch', 'compound'"),
        ("feature_source: [x]", "expected a name or a mapping"),
    ],
)
def test_bad_declarations_name_the_file_and_the_problem(tmp_path, declaration, message):
    write(
        tmp_path,
        "cells",
        f"""
        table: cells
        {declaration}
        columns:
          - {{name: plate, type: VARCHAR, role: key}}
          - {{name: well, type: VARCHAR, role: key}}
          - {{name: Cells_x, type: FLOAT, role: feature}}
        """,
    )
    with pytest.raises(DeclarationError, match=message) as caught:
        declared_sources(tmp_path)
    assert str(tmp_path / "cells.yml") in str(caught.value)


def test_a_wide_source_needs_feature_columns_and_names_are_unique(tmp_path):
    write(
        tmp_path,
        "a",
        "table: a\nfeature_source: x\ncolumns: [{name: plate, type: VARCHAR, role: key}]",
    )
    with pytest.raises(DeclarationError, match="needs columns or column_groups with role feature"):
        declared_sources(tmp_path)
    columns = (
        "columns: [{name: plate, type: VARCHAR, role: key}, "
        "{name: well, type: VARCHAR, role: key}, {name: Cells_a, type: FLOAT, role: feature}]"
    )
    write(tmp_path, "a", f"table: a\nfeature_source: x\n{columns}")
    write(tmp_path, "b", f"table: b\nfeature_source: x\n{columns}")
    with pytest.raises(DeclarationError, match=r"feature source\(s\) \['x'\] declared twice"):
        declared_sources(tmp_path)


def toy_embeddings(seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """A FLOAT[] embeddings table of two models over 2 plates x 3 wells, and its images."""
    rng = np.random.default_rng(seed)
    rows, fields = [], []
    for plate in ("P1", "P2"):
        for w, well in enumerate(("A01", "A02", "B01")):
            image_id = f"{plate}_{well}_s1"
            fields.append(
                {
                    "image_id": image_id,
                    "plate": plate,
                    "well": well,
                    "batch": "Week1" if plate == "P1" else "Week2",
                    "compound": "DMSO" if w == 0 else "taxol",
                    "concentration": 0.0 if w == 0 else 0.3,
                }
            )
            for model, width in (("simclr", 4), ("simclr_untrained", 4)):
                for c in range(1 + w + (plate == "P2")):  # 1..4 cells: odd and even
                    rows.append(
                        {
                            "cell_id": f"{image_id}_{c}",
                            "image_id": image_id,
                            "plate": plate,
                            "well": well,
                            "model": model,
                            "embedding": rng.normal(size=width).astype(np.float32).tolist(),
                        }
                    )
    order = rng.permutation(len(rows))  # rows of a well need not be together
    table = pa.Table.from_pylist([rows[i] for i in order])
    table = table.set_column(5, "embedding", table["embedding"].cast(pa.list_(pa.float32())))
    return table, pa.Table.from_pylist(fields)


def test_a_float_vector_table_becomes_two_sources_by_declaration_alone(tmp_path):
    write(tmp_path, "embeddings", EMBEDDINGS_SCHEMA)
    sources = declared_sources(tmp_path)
    embeddings, images = toy_embeddings()
    con = duckdb.connect()
    put(con, "embeddings", embeddings)
    put(con, "images", images)
    put(con, "moa", pa.table({"compound": ["taxol"], "concentration": [0.3], "moa": ["MS"]}))
    built = build_well_profiles(
        con.table("images"), con.table("moa"), {"embeddings": con.table("embeddings")}, sources
    )
    profiles = built["well_profiles"].to_pandas()
    frame = embeddings.to_pandas()
    assert profiles.feature_source.tolist() == ["simclr"] * 6 + ["simclr_untrained"] * 6
    for _, row in profiles.iterrows():
        cells = frame[
            (frame.model == row.feature_source)
            & (frame.plate == row.plate)
            & (frame.well == row.well)
        ]
        expected = np.stack(cells.embedding.to_numpy()).astype(np.float64).mean(axis=0)
        np.testing.assert_array_equal(row.features, expected.astype(np.float32))
        assert row.n_cells == len(cells)
    assert profiles[profiles.well == "A02"].moa.tolist() == ["MS"] * 4
    assert profiles[profiles.well == "A01"].moa.isna().all()
    assert set(zip(profiles.plate, profiles.batch, strict=True)) == {
        ("P1", "Week1"),
        ("P2", "Week2"),
    }
    sets = built["feature_sets"].to_pylist()
    assert [s["feature_source"] for s in sets] == ["simclr", "simclr_untrained"]
    assert sets[0]["feature_names"] == [
        "embedding_0001",
        "embedding_0002",
        "embedding_0003",
        "embedding_0004",
    ]
    assert built["well_profiles"].schema.field("features").type == pa.list_(pa.float32())


def test_a_cell_well_without_a_field_in_images_is_an_error(tmp_path):
    write(tmp_path, "embeddings", EMBEDDINGS_SCHEMA)
    embeddings, images = toy_embeddings()
    con = duckdb.connect()
    put(con, "embeddings", embeddings)
    put(con, "images", images.filter(pa.compute.not_equal(images["well"], "B01")))
    put(con, "moa", pa.table({"compound": ["x"], "concentration": [0.0], "moa": ["y"]}))
    with pytest.raises(ValueError, match=r"2 well\(s\) of feature source simclr have no field"):
        build_well_profiles(
            con.table("images"),
            con.table("moa"),
            {"embeddings": con.table("embeddings")},
            declared_sources(tmp_path),
        )


def test_a_well_level_vector_source_keeps_its_own_treatments(tmp_path):
    write(
        tmp_path,
        "atlas",
        """
        table: atlas
        feature_source: {name: atlas, grain: well}
        columns:
          - {name: plate, type: VARCHAR, role: key}
          - {name: well, type: VARCHAR, role: key}
          - {name: batch, type: VARCHAR, role: meta}
          - {name: compound, type: VARCHAR, role: meta}
          - {name: concentration, type: DOUBLE, role: meta}
          - {name: profile, type: "FLOAT[]", role: feature}
        """,
    )
    atlas = pa.table(
        {
            "plate": ["Q1", "Q1"],
            "well": ["B02", "A01"],
            "batch": ["Week9", "Week9"],
            "compound": ["DMSO", "taxol"],
            "concentration": [0.0, 0.3],
            "profile": pa.array([[1.0, 2.0], [3.0, 4.5]], pa.list_(pa.float32())),
        }
    )
    con = duckdb.connect()
    put(con, "atlas", atlas)
    put(
        con,
        "images",
        pa.table(
            {
                "plate": pa.array([], pa.string()),
                "well": pa.array([], pa.string()),
                "batch": pa.array([], pa.string()),
                "compound": pa.array([], pa.string()),
                "concentration": pa.array([], pa.float64()),
            }
        ),
    )
    put(con, "moa", pa.table({"compound": ["taxol"], "concentration": [0.3], "moa": ["MS"]}))
    built = build_well_profiles(
        con.table("images"),
        con.table("moa"),
        {"atlas": con.table("atlas")},
        declared_sources(tmp_path),
    )
    rows = built["well_profiles"].to_pylist()
    assert [(r["well"], r["compound"], r["moa"], r["n_cells"]) for r in rows] == [
        ("A01", "taxol", "MS", None),
        ("B02", "DMSO", None, None),
    ]
    assert [r["features"] for r in rows] == [[3.0, 4.5], [1.0, 2.0]]
    assert built["feature_sets"].to_pylist()[0]["feature_names"] == ["profile_0001", "profile_0002"]
    assert pd.isna(pd.Series([rows[0]["n_cells"]])).all()


TOY_STAGES = {
    "images": '''
        import pyarrow as pa
        from cellstore.stage import stage

        @stage
        def images():
            """Two fields. Grain: image_id."""
            return pa.table({"image_id": ["P1_A01", "P1_A02"], "plate": ["P1", "P1"],
                             "well": ["A01", "A02"], "batch": ["Week1", "Week1"],
                             "compound": ["DMSO", "taxol"], "concentration": [0.0, 0.3]})
    ''',
    "moa": '''
        import pyarrow as pa
        from cellstore.stage import stage

        @stage
        def moa():
            """Grain: (compound, concentration)."""
            return pa.table({"compound": ["taxol"], "concentration": [0.3], "moa": ["MS"]})
    ''',
    "embeddings": '''
        import pyarrow as pa
        from cellstore.stage import stage

        @stage
        def embeddings(images):
            """Two cells per field, each embedded by two models. Grain: (cell_id, model)."""
            rows = []
            for image_id, plate, well in images.select("image_id, plate, well").fetchall():
                for cell in range(2):
                    for model, scale in (("simclr", 1.0), ("simclr_untrained", -1.0)):
                        vector = [scale * (cell + 1), scale * 2.0, 0.5]
                        rows.append({"cell_id": f"{image_id}_{cell}", "image_id": image_id,
                                     "plate": plate, "well": well, "model": model,
                                     "embedding": vector})
            table = pa.Table.from_pylist(rows)
            return table.set_column(5, "embedding", table["embedding"].cast(pa.list_(pa.float32())))
    ''',
}


def test_a_declared_float_vector_source_builds_through_the_runner(tmp_path):
    import shutil

    from conftest import ToyProject

    project = ToyProject(tmp_path / "project")
    for name, text in TOY_STAGES.items():
        project.py(name, text)
    shutil.copy(REPO / "stages" / "well_profiles.py", project.root / "stages")
    write(project.root / "schemas", "embeddings", EMBEDDINGS_SCHEMA)
    runner = project.runner()
    assert runner.project.stages["well_profiles"].inputs == ("images", "moa", "embeddings")
    result = project.build()
    assert result.first_failure() is None, result.first_failure()
    rows = project.query(
        "select feature_source, well, n_cells, features from well_profiles order by all"
    )
    assert rows == [
        ("simclr", "A01", 2, [1.5, 2.0, 0.5]),
        ("simclr", "A02", 2, [1.5, 2.0, 0.5]),
        ("simclr_untrained", "A01", 2, [-1.5, -2.0, 0.5]),
        ("simclr_untrained", "A02", 2, [-1.5, -2.0, 0.5]),
    ]
    assert project.query("select feature_source, n_features from feature_sets") == [
        ("simclr", 3),
        ("simclr_untrained", 3),
    ]
    plans = {p.stage: (p.action, p.reason) for p in project.runner().plan()}
    assert plans["well_profiles"] == ("skip", "up to date")
    # Editing the declaration alone rebuilds the stage: one source over both models' rows.
    schema = project.root / "schemas" / "embeddings.yml"
    schema.write_text(schema.read_text().replace("{source_column: model}", "{name: simclr_all}"))
    plans = {p.stage: (p.action, p.reason) for p in project.runner().plan()}
    assert plans["well_profiles"][0] == "build"
    assert plans["embeddings"] == ("skip", "up to date")
    assert project.build().first_failure() is None
    assert project.query("select distinct feature_source, n_cells from well_profiles") == [
        ("simclr_all", 4)
    ]
