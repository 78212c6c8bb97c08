"""The image stages called directly on DuckDB relations: a small source with planted bad fields."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from imaging_support import images_row, phantom_source, put, run_stage, write_field

from cellstore.imaging.crops import read_crops
from cellstore.imaging.evaluation import DetectionScore, match_centres

SHAPE = (256, 320)
BAD_REASONS = {
    "P1_G01_s1": "blank",
    "P1_G02_s1": "saturated",
    "P1_G03_s1": "not_finite",
    "P1_G04_s1": "unreadable",
    "P1_G05_s1": "no_nuclei",
}


def _bad_fields(folder) -> list[dict]:
    rng = np.random.default_rng(5)

    def noise() -> np.ndarray:
        return rng.poisson(300, SHAPE).astype(np.uint16)

    saturated = noise()
    saturated[: SHAPE[0] // 2] = 65535
    with_nan = noise().astype(np.float32)
    with_nan[10, 10] = np.nan
    fields = {
        "P1_G01_s1": {"dapi": np.zeros(SHAPE, np.uint16), "tubulin": noise(), "actin": noise()},
        "P1_G02_s1": {"dapi": saturated, "tubulin": noise(), "actin": noise()},
        "P1_G03_s1": {"dapi": noise(), "tubulin": with_nan, "actin": noise()},
        "P1_G04_s1": {"dapi": noise(), "tubulin": noise(), "actin": noise()},
        "P1_G05_s1": {"dapi": noise(), "tubulin": noise(), "actin": noise()},
    }
    rows = []
    for image_id, channels in fields.items():
        paths = write_field(folder / "P1", image_id, channels)
        rows.append(images_row(image_id, "P1", paths, SHAPE))
    with open(rows[3]["path_tubulin"], "wb") as handle:
        handle.write(b"\x00garbage")
    return rows


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """images → illumination → nuclei → crops → cell_features on 6 good + 5 bad fields."""
    folder = tmp_path_factory.mktemp("imaging_stages")
    good, truth = phantom_source(folder, {"P1": 3, "P2": 3}, diameter=10, shape=SHAPE)
    con = duckdb.connect()
    put(con, "images", pa.Table.from_pylist(good + _bad_fields(folder)))
    events: list = []
    counts = {}
    for name in ("illumination", "nuclei", "crops", "cell_features"):
        counts |= run_stage(con, name, folder / "scratch", events if name == "nuclei" else None)
    return con, truth, counts, events


def test_illumination_has_one_function_per_plate_and_channel(built):
    con, *_ = built
    rows = con.sql(
        "select plate, channel, shape, n_images, n_rejected, intensity_low < intensity_high "
        "from illumination order by plate, channel"
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [
        (p, c) for p in ("P1", "P2") for c in ("actin", "dapi", "tubulin")
    ]
    assert all(r[2] == [64, 80] and r[5] for r in rows)  # 256×320 downscaled ×4
    assert {r[0]: (r[3], r[4]) for r in rows} == {"P1": (4, 4), "P2": (3, 0)}


def test_every_field_is_in_nuclei_or_rejected_with_its_reason(built):
    con, *_ = built
    accepted = {r[0] for r in con.sql("select distinct image_id from nuclei").fetchall()}
    rejected = dict(con.sql("select image_id, reason from nuclei_rejected").fetchall())
    assert rejected == BAD_REASONS
    assert not accepted & set(rejected)
    everything = {r[0] for r in con.sql("select image_id from images").fetchall()}
    assert accepted | set(rejected) == everything
    detail = con.sql("select detail from nuclei_rejected where reason = 'unreadable'").fetchone()
    assert "P1_G04_s1_tubulin.tif" in detail[0]


def test_nuclei_match_the_planted_centres(built):
    con, truth, *_ = built
    score = DetectionScore(0, 0, 0)
    for image_id, centres in truth.items():
        found = con.sql(f"select x, y from nuclei where image_id = '{image_id}'").fetchnumpy()
        score = score + match_centres(np.c_[found["x"], found["y"]], centres, radius=5)
    assert score.recall >= 0.95 and score.precision >= 0.95
    ids = con.sql("select count(*), count(distinct cell_id) from nuclei").fetchone()
    assert ids[0] == ids[1]
    example = con.sql("select cell_id, image_id, object_number from nuclei limit 1").fetchone()
    assert example[0] == f"{example[1]}_{example[2]}"


def test_progress_counts_every_field_once(built):
    *_, events = built
    assert sum(advance for advance, _ in events) == 11
    assert {total for _, total in events} == {11}


def test_one_centred_crop_per_nucleus(built):
    con, _, counts, _ = built
    assert counts["crops"] == counts["nuclei"]
    assert counts["crops_rejected"] == 0
    batch = read_crops(con.sql("select * from crops order by cell_id"))
    # box 96 at the 1280-px reference width → 24 px on these 320-px fields
    assert batch.shape == (counts["nuclei"], 3, 24, 24) and batch.dtype == np.uint8
    centre = batch[:, 0, 11:13, 11:13].mean(axis=(1, 2))
    corner = batch[:, 0, :3, :3].mean(axis=(1, 2))
    assert np.median(centre) > 150 and np.median(corner) < 60  # DAPI bright at the centre
    keys = con.sql("select count(*) from crops join nuclei using (cell_id, image_id)").fetchone()
    assert keys[0] == counts["crops"]


def test_crop_settings_box_border_and_image_normalisation(built, tmp_path):
    con, _, counts, _ = built
    scratch = con.cursor()
    for table in ("images", "nuclei", "illumination"):
        put(scratch, table, con.table(table).to_arrow_table())
    run_stage(
        scratch,
        "crops",
        tmp_path,
        box=32,
        reference_width=0,
        border="shift",
        normalization="image",
    )
    batch = read_crops(scratch.table("crops"))
    assert batch.shape == (counts["nuclei"], 3, 32, 32)
    assert scratch.sql("select bool_or(is_border) from crops").fetchone()[0]
    with pytest.raises(ValueError, match="border must be one of"):
        run_stage(scratch, "crops", tmp_path, border="mirror")


def test_cell_features_are_wide_float32_per_cell(built):
    con, _, counts, _ = built
    assert counts["cell_features"] == counts["nuclei"]
    columns = {row[0]: row[1] for row in con.sql("describe cell_features").fetchall()}
    keys = {"image_id", "cell_id", "plate", "well"}
    features = {name: kind for name, kind in columns.items() if name not in keys}
    assert keys <= set(columns)
    assert len(features) >= 50
    assert set(features.values()) == {"FLOAT"}
    assert all(name.split("_")[0] in ("Nuclei", "Cells", "Cytoplasm") for name in features)
    checks = " + ".join(f'(not isfinite("{name}"))::int' for name in features)
    assert con.sql(f"select sum({checks}) from cell_features").fetchone()[0] == 0
    joined = con.sql("select count(*) from cell_features join nuclei using (cell_id)").fetchone()
    assert joined[0] == counts["nuclei"]
