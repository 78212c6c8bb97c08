"""Incremental stages never serve stale rows: changed driver rows, side inputs, artifacts.

Each scenario is compared with a from-scratch build of the same project and settings.
"""

from __future__ import annotations

import shutil

import pytest
from conftest import ToyProject

IMAGES = """
import pyarrow as pa
from cellstore.stage import stage

@stage
def images(*, fields: list = ["p1:a", "p1:b", "p2:c"], brightness: dict = {}):
    plates = [f.split(":")[0] for f in fields]
    ids = [f.split(":")[1] for f in fields]
    return pa.table({
        "image_id": ids,
        "plate": plates,
        "value": [int(brightness.get(i, 1)) for i in ids],
    })
"""

# Per plate: gain × number of fields of the plate (depends on every field of the plate).
ILLUMINATION = """
import pyarrow as pa
from cellstore.stage import stage

@stage(incremental="plate")
def illumination(images, *, gain: int = 10):
    rows = images.aggregate("plate, count(*) as n", "plate").fetchall()
    return pa.table({
        "plate": [r[0] for r in rows],
        "correction": [gain * r[1] for r in rows],
    })
"""

CROPS = """
import pyarrow as pa
from cellstore.stage import stage

@stage(incremental="image_id"{partitions})
def crops(images, illumination):
    images_rows = images.fetchall()
    with open({log!r}, "a") as log:
        log.write(",".join(sorted(r[0] for r in images_rows)) + "\\n")
    correction = dict(illumination.select("plate, correction").fetchall())
    return pa.table({
        "image_id": [r[0] for r in images_rows],
        "plate": [r[1] for r in images_rows],
        "crop": [r[2] * correction[r[1]] for r in images_rows],
    }, schema=pa.schema([("image_id", pa.string()), ("plate", pa.string()), ("crop", pa.int64())]))
"""


def image_project(root, log, partitions: bool) -> ToyProject:
    project = ToyProject(root)
    project.py("images", IMAGES)
    project.py("illumination", ILLUMINATION)
    declared = ', partitions={"illumination": "plate"}' if partitions else ""
    project.py("crops", CROPS.replace("{partitions}", declared).replace("{log!r}", repr(str(log))))
    return project


def from_scratch(project: ToyProject, tmp_path, name: str) -> list[tuple]:
    """The same project and config built into a fresh warehouse: the rows it should have."""
    clean = ToyProject(tmp_path / name)
    for folder in ("stages", "sql"):
        shutil.rmtree(clean.root / folder)
        shutil.copytree(project.root / folder, clean.root / folder)
    if (project.root / "cellstore.toml").exists():
        shutil.copy(project.root / "cellstore.toml", clean.root / "cellstore.toml")
    assert clean.build().ok
    return clean.query("select image_id, plate, crop from crops order by image_id")


def crops_rows(project: ToyProject) -> list[tuple]:
    return project.query("select image_id, plate, crop from crops order by image_id")


def statuses(result) -> dict[str, str]:
    return {r.stage: r.status for r in result.results}


@pytest.mark.parametrize("partitions", [True, False], ids=["partitioned", "undeclared"])
def test_new_illumination_setting_leaves_no_stale_crop(tmp_path, partitions):
    log = tmp_path / "crops.log"
    toy = image_project(tmp_path / "toy", log, partitions)
    assert toy.build().ok
    assert crops_rows(toy) == [("a", "p1", 20), ("b", "p1", 20), ("c", "p2", 10)]
    toy.config("[stages.illumination]\ngain = 100\n")
    result = toy.build()
    assert result.ok
    assert statuses(result)["illumination"] == "built"
    assert crops_rows(toy) == from_scratch(toy, tmp_path, "scratch")
    assert crops_rows(toy) == [("a", "p1", 200), ("b", "p1", 200), ("c", "p2", 100)]


@pytest.mark.parametrize("partitions", [True, False], ids=["partitioned", "undeclared"])
def test_field_added_to_an_existing_plate_leaves_no_stale_crop(tmp_path, partitions):
    log = tmp_path / "crops.log"
    toy = image_project(tmp_path / "toy", log, partitions)
    assert toy.build().ok
    toy.config('[stages.images]\nfields = ["p1:a", "p1:b", "p2:c", "p1:d"]\n')
    result = toy.build()
    assert result.ok
    # p1 has 3 fields now: its illumination changes, and so does every p1 crop.
    assert toy.query("select plate, correction from illumination order by 1") == [
        ("p1", 30),
        ("p2", 10),
    ]
    if partitions:
        # Only plate p1 was recomputed; p2's crop was kept.
        assert statuses(result)["crops"] == "incremental"
        assert log.read_text().splitlines()[-1] == "a,b,d"
    assert crops_rows(toy) == from_scratch(toy, tmp_path, "scratch")


def test_partitioned_side_change_recomputes_only_that_plate(tmp_path):
    log = tmp_path / "crops.log"
    toy = image_project(tmp_path / "toy", log, partitions=True)
    assert toy.build().ok
    toy.config('[stages.images]\nfields = ["p1:a", "p1:b", "p2:c", "p3:e"]\n')
    result = toy.build()
    assert statuses(result)["illumination"] == "incremental"
    assert statuses(result)["crops"] == "incremental"
    assert log.read_text().splitlines() == ["a,b,c", "e"]  # a new plate: only its field
    assert crops_rows(toy) == from_scratch(toy, tmp_path, "scratch")


def test_changed_driver_row_is_recomputed(tmp_path):
    """Same image_id, new content: the key is recomputed, not kept."""
    log = tmp_path / "crops.log"
    toy = image_project(tmp_path / "toy", log, partitions=True)
    assert toy.build().ok
    toy.config("[stages.images]\nbrightness = {c = 7}\n")
    result = toy.build()
    assert result.ok
    # p2's content changed, its illumination was recomputed, to the same correction.
    assert statuses(result)["illumination"] == "incremental"
    assert log.read_text().splitlines()[-1] == "c"  # only the changed key
    assert ("c", "p2", 70) in crops_rows(toy)
    assert crops_rows(toy) == from_scratch(toy, tmp_path, "scratch")


ENCODER = """
from cellstore.stage import stage

@stage(artifact=True)
def encoder(images, *, epochs: int = 1, ctx):
    (ctx.artifact_dir / "weights.txt").write_text(str(epochs))
"""

EMBEDDINGS = """
import pyarrow as pa
from cellstore.stage import stage

@stage(incremental="image_id")
def embeddings(images, encoder):
    weight = int((encoder / "weights.txt").read_text())
    rows = images.select("image_id, value").fetchall()
    return pa.table({"image_id": [r[0] for r in rows], "vector": [r[1] * weight for r in rows]})
"""


def test_retrained_encoder_leaves_no_stale_embedding(tmp_path):
    toy = ToyProject(tmp_path / "toy")
    toy.py("images", IMAGES)
    toy.py("encoder", ENCODER)
    toy.py("embeddings", EMBEDDINGS)
    assert toy.build().ok
    assert toy.query("select distinct vector from embeddings") == [(1,)]
    toy.config("[stages.encoder]\nepochs = 5\n")
    result = toy.build()
    assert result.ok and statuses(result)["encoder"] == "built"
    assert toy.query("select image_id, vector from embeddings order by 1") == [
        ("a", 5),
        ("b", 5),
        ("c", 5),
    ]
    # A new image with the retrained encoder, still incremental on the driver only.
    toy.config(
        '[stages.encoder]\nepochs = 5\n[stages.images]\nfields = ["p1:a", "p1:b", "p2:c", "p2:f"]\n'
    )
    result = toy.build()
    assert result.ok
    rows = toy.query("select image_id, vector from embeddings order by 1")
    assert rows == [("a", 5), ("b", 5), ("c", 5), ("f", 5)]
