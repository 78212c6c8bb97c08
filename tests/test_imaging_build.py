"""`cellstore build` of the image stages on generated plates: ground truth, no-op, incremental."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from imaging_support import IMAGE_STAGES, REPO

from cellstore.engine.config import load_config
from cellstore.engine.project import load_project
from cellstore.engine.runner import Runner
from cellstore.engine.warehouse import Warehouse
from cellstore.imaging.evaluation import DetectionScore, match_centres
from cellstore.synth import generate
from cellstore.synth.demo import DEMO

FIRST, SECOND = "Week5_29301", "Week6_32161"  # 12 annotated wells each: the smallest plates


def _demo_like(folder, plates):
    """The embedded demo's generator parameters (scale, sites, wells, seed) on a few plates."""
    return generate(
        folder, plates=plates, sites=DEMO.sites, scale=DEMO.scale, seed=DEMO.seed, wells=DEMO.wells
    )


class ImageProject:
    """A project holding the repo's images stage and image stages, built in a temp folder."""

    def __init__(self, root, source):
        (root / "stages").mkdir(parents=True)
        for name in ("images", *IMAGE_STAGES):
            shutil.copy(REPO / "stages" / f"{name}.py", root / "stages" / f"{name}.py")
        shutil.copytree(REPO / "schemas", root / "schemas")
        # Everything in-process except crops, which goes through a real 2-worker LocalCluster.
        (root / "cellstore.toml").write_text(
            '[settings]\nscheduler = "inline"\n\n[stages.crops]\nscheduler = ""\nworkers = 2\n'
        )
        self.root, self.source = root, source

    def build(self):
        runner = Runner(
            load_project(self.root), load_config(self.root), overrides={"source": str(self.source)}
        )
        result = runner.build()
        failed = [r for r in result.results if r.status in ("failed", "blocked")]
        assert not failed, failed[0].error
        return {r.stage: r for r in result.results}

    def query(self, sql):
        con = Warehouse(self.root / "warehouse").connect(read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("imaging_build")
    source = root / "source"
    _demo_like(source, [FIRST])
    project = ImageProject(root / "project", source)
    first = project.build()
    again = project.build()
    truth_first = pq.read_table(source / "ground_truth" / "nuclei.parquet")
    _demo_like(source, [FIRST, SECOND])  # adds a plate; FIRST's files are regenerated identically
    third = project.build()
    truth = pq.read_table(source / "ground_truth" / "nuclei.parquet").to_pandas()
    return project, (first, again, third), truth_first.num_rows, truth


def test_first_build_goes_from_raw_images_to_crops_and_features(project):
    project, (first, _, _), _, _ = project
    assert {s: first[s].status for s in ("images", *IMAGE_STAGES)} == dict.fromkeys(
        ("images", *IMAGE_STAGES), "built"
    )
    n_nuclei = first["nuclei"].n_rows
    assert first["crops"].n_rows == first["cell_features"].n_rows == n_nuclei > 0


def test_second_build_does_nothing(project):
    _, (_, again, _), _, _ = project
    assert {result.status for result in again.values()} == {"up to date"}


def test_adding_a_plate_processes_only_its_images(project):
    project, (first, _, third), _, truth = project
    for name in ("illumination", "nuclei", "crops", "cell_features"):
        assert third[name].status == "incremental"
    second_plate = project.query(f"select count(*) from nuclei where plate = '{SECOND}'")[0][0]
    assert third["nuclei"].n_rows == second_plate  # rows added by this build: the new plate's
    assert third["crops"].n_rows == third["cell_features"].n_rows == second_plate
    assert third["illumination"].n_rows == 3
    total = project.query("select count(*), count(distinct cell_id) from crops")[0]
    assert total == (first["nuclei"].n_rows + second_plate,) * 2


def test_detection_matches_the_generator_ground_truth(project):
    project, _, _, truth = project
    found = project.query("select image_id, x, y from nuclei")
    by_image: dict[str, list] = {}
    for image_id, x, y in found:
        by_image.setdefault(image_id, []).append((x, y))
    score = DetectionScore(0, 0, 0)
    for image_id, rows in truth.groupby("image_id"):
        detected = np.array(by_image.get(image_id, []), np.float64).reshape(-1, 2)
        score = score + match_centres(detected, rows[["x", "y"]].to_numpy(), radius=5)
    assert score.n_truth == len(truth)
    assert score.recall >= 0.95, score
    assert score.precision >= 0.95, score


@pytest.mark.slow
def test_detection_on_the_whole_demo_source(tmp_path):
    """The embedded demo (all annotated wells of the 55 plates): recall, precision ≥ 0.95."""
    import duckdb

    from cellstore.imaging.driver import (
        FIELD_COLUMNS,
        IlluminationSettings,
        build_illumination,
        run_field_tasks,
    )
    from cellstore.imaging.tasks import NucleiSettings, nuclei_schema, nuclei_task
    from cellstore.parallel import task_pool
    from cellstore.sources.images import load_images
    from cellstore.synth.demo import demo_source

    source = demo_source(tmp_path / "cache", workers=2)
    images, _ = load_images(source)
    con = duckdb.connect()
    con.register("images_arrow", images)
    con.execute("create table images as select * from images_arrow")
    with task_pool("", workers=2) as pool:
        illumination = build_illumination(con.table("images"), IlluminationSettings(), pool=pool)
        con.register("illumination", illumination)
        run = run_field_tasks(
            con.table("images").select(", ".join(FIELD_COLUMNS)),
            con.table("illumination"),
            nuclei_task,
            NucleiSettings(),
            pool=pool,
            parts_dir=tmp_path / "parts",
            prefix="nuclei",
            schema=nuclei_schema(),
        )
    found = pd.concat([pq.read_table(part).to_pandas() for part in run.parts])
    detected = {key: rows[["x", "y"]].to_numpy() for key, rows in found.groupby("image_id")}
    truth = pq.read_table(source / "ground_truth" / "nuclei.parquet").to_pandas()
    score = DetectionScore(0, 0, 0)
    for image_id, rows in truth.groupby("image_id"):
        points = detected.get(image_id, np.zeros((0, 2)))
        score = score + match_centres(points, rows[["x", "y"]].to_numpy(), radius=5)
    print(f"demo source: {score} recall {score.recall:.4f} precision {score.precision:.4f}")
    assert score.recall >= 0.95 and score.precision >= 0.95
