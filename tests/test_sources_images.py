"""The BBBC021 loader on generated plates: accepted fields, each rejection class, stages."""

from __future__ import annotations

import csv
import importlib.util
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellstore.sources import ALL_REASONS, MetadataError, load_images, load_moa
from cellstore.sources.bbbc021 import IMAGE_CSV
from cellstore.stage import StageContext
from cellstore.synth import generate, source_digest

REPO = Path(__file__).resolve().parents[1]
PLATE = "Week5_29301"  # 12 annotated wells: a small plate


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """One plate, annotated wells, 1 site, tiny images (64×51): 12 fields."""
    out = tmp_path_factory.mktemp("synth") / "source"
    generate(out, plates=[PLATE], sites=1, scale=0.05, wells="annotated")
    return out


@pytest.fixture
def source(generated: Path, tmp_path: Path) -> Path:
    """A private copy of the generated source, free to corrupt."""
    copy = tmp_path / "source"
    shutil.copytree(generated, copy)
    return copy


def read_rows(source: Path) -> tuple[list[str], list[list[str]]]:
    text = (source / IMAGE_CSV).read_bytes().decode()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    return rows[0], rows[1:]


def write_rows(source: Path, header: list[str], rows: list[list[str]], ending="\r\n") -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=ending).writerows([header, *rows])
    (source / IMAGE_CSV).write_bytes(buffer.getvalue().encode())


def channel_file(source: Path, header: list[str], row: list[str], stem: str) -> Path:
    cell = dict(zip(header, row, strict=True))
    return source / cell[f"Image_PathName_{stem}"] / cell[f"Image_FileName_{stem}"]


def test_generated_plate_loads_completely(source: Path):
    header, rows = read_rows(source)
    images, rejected = load_images(source)
    assert rejected.num_rows == 0
    assert images.num_rows == len(rows) == 12
    table = images.to_pylist()
    first = table[0]
    cell = dict(zip(header, rows[0], strict=True))
    assert first["plate"] == PLATE and first["batch"] == "Week5"
    assert first["well"] == cell["Image_Metadata_Well_DAPI"]
    assert first["image_id"] == f"{PLATE}_{first['well']}_s1"
    assert first["compound"] == cell["Image_Metadata_Compound"]
    assert first["concentration"] == float(cell["Image_Metadata_Concentration"])
    assert (first["width"], first["height"], first["dtype"]) == (64, 51, "uint16")
    assert Path(first["path_dapi"]).is_absolute() and Path(first["path_dapi"]).is_file()
    assert "_w2" in Path(first["path_tubulin"]).name and "_w4" in Path(first["path_actin"]).name
    assert [r["source_row"] for r in table] == list(range(1, 13))


def test_each_corruption_lands_in_rejected_with_its_reason(source: Path):
    header, rows = read_rows(source)
    shape = tifffile.imread(channel_file(source, header, rows[0], "DAPI")).shape
    channel_file(source, header, rows[0], "Tubulin").unlink()
    truncated = channel_file(source, header, rows[1], "DAPI")
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    channel_file(source, header, rows[2], "Actin").write_bytes(b"this is not a tiff")
    tifffile.imwrite(
        channel_file(source, header, rows[3], "DAPI"),
        np.zeros((shape[0] + 3, shape[1]), np.uint16),
    )
    tifffile.imwrite(channel_file(source, header, rows[4], "Tubulin"), np.zeros(shape, np.uint8))
    duplicate = list(rows[5])
    bad_number = list(rows[6])
    bad_number[header.index("Image_Metadata_Concentration")] = "three"
    short = rows[7][:5]
    wrong_channel = list(rows[8])
    dapi = header.index("Image_FileName_DAPI")
    wrong_channel[dapi] = wrong_channel[dapi].replace("_w1", "_w3", 1)
    write_rows(source, header, [*rows, duplicate, bad_number, short, wrong_channel])

    images, rejected = load_images(source)
    reasons = {r["source_row"]: r["reason"] for r in rejected.to_pylist()}
    n = len(rows)
    assert reasons == {
        1: "missing_file",
        2: "truncated_tiff",
        3: "unreadable_tiff",
        4: "wrong_shape",
        5: "wrong_dtype",
        n + 1: "duplicate_field",
        n + 2: "bad_metadata",
        n + 3: "bad_metadata",
        n + 4: "bad_metadata",
    }
    assert set(reasons.values()) <= set(ALL_REASONS)
    assert images.num_rows + rejected.num_rows == n + 4
    accepted_rows = set(images.column("source_row").to_pylist())
    assert accepted_rows | set(reasons) == set(range(1, n + 5))
    by_row = {r["source_row"]: r for r in rejected.to_pylist()}
    assert "Tubulin" in by_row[1]["detail"] and by_row[1]["image_id"] == images_id(rows[0])
    assert "row 6" in by_row[n + 1]["detail"]
    assert "Image_Metadata_Concentration" in by_row[n + 2]["detail"]
    assert by_row[n + 2]["plate"] == PLATE and by_row[n + 2]["concentration"] is None
    assert "fields" in by_row[n + 3]["detail"]
    assert "_w1" in by_row[n + 4]["detail"]
    assert all(r["source_file"] == str(source / IMAGE_CSV) for r in by_row.values())


def images_id(row: list[str]) -> str:
    plate, well = row[8], row[9]
    return f"{plate}_{well}_s1"


def test_explicit_shape_and_dtype_are_enforced(source: Path):
    images, rejected = load_images(source, shape=(1024, 1280))
    assert images.num_rows == 0
    assert set(rejected.column("reason").to_pylist()) == {"wrong_shape"}
    images, rejected = load_images(source, dtype="uint8")
    assert images.num_rows == 0
    assert set(rejected.column("reason").to_pylist()) == {"wrong_dtype"}


def test_line_endings_and_quoting_do_not_change_the_table(source: Path):
    expected, _ = load_images(source)
    header, rows = read_rows(source)
    for ending in ("\r", "\n"):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=ending, quoting=csv.QUOTE_ALL).writerows([header, *rows])
        (source / IMAGE_CSV).write_bytes(buffer.getvalue().encode())
        assert load_images(source)[0].equals(expected)
    concentration = header.index("Image_Metadata_Concentration")
    respelled = [list(r) for r in rows]
    for row in respelled:
        row[concentration] = f"{float(row[concentration]):e}"  # 3.000000e-01
    write_rows(source, header, respelled)
    assert load_images(source)[0].equals(expected)


def test_missing_column_is_one_error_naming_file_and_column(source: Path):
    header, rows = read_rows(source)
    drop = header.index("Replicate")
    write_rows(
        source,
        [h for i, h in enumerate(header) if i != drop],
        [[v for i, v in enumerate(r) if i != drop] for r in rows],
    )
    with pytest.raises(MetadataError, match=r"BBBC021_v1_image\.csv.*'Replicate'"):
        load_images(source)


def test_missing_metadata_file_is_an_error(tmp_path: Path):
    with pytest.raises(MetadataError, match="BBBC021_v1_image.csv"):
        load_images(tmp_path)


def test_moa_table_has_canonical_concentrations(source: Path):
    moa = load_moa(source).to_pylist()
    assert len(moa) == 104
    assert {"compound": "DMSO", "concentration": 0.0, "moa": "DMSO"} in moa
    assert {"compound": "AZ-C", "concentration": 0.001, "moa": "Eg5 inhibitors"} in moa


def test_moa_duplicate_treatment_is_an_error(source: Path):
    path = source / "BBBC021_v1_moa.csv"
    path.write_bytes(path.read_bytes() + b"\rtaxol,3e0,Microtubule stabilizers")
    with pytest.raises(MetadataError, match=r"row 105.*taxol"):
        load_moa(source)


def load_stage(name: str):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def context(tmp_path: Path) -> StageContext:
    return StageContext(
        stage="images",
        artifact_dir=None,
        parts_dir=tmp_path / "parts",
        cache_dir=tmp_path / "cache",
        settings={},
        config=None,
    )


def test_stages_load_a_source_folder(source: Path, tmp_path: Path):
    images = load_stage("images")
    moa = load_stage("moa")
    tables = images(source=str(source), ctx=context(tmp_path))
    assert set(tables) == {"images", "images_rejected"}
    assert tables["images"].num_rows == 12 and tables["images_rejected"].num_rows == 0
    assert moa(source=str(source), ctx=context(tmp_path)).num_rows == 104
    spec = images.__cellstore_stage__
    assert spec.outputs == ("images", "images_rejected")
    assert spec.settings == {"source": "", "dtype": "uint16"}


def test_watch_digest_sees_a_new_plate_but_not_a_read(source: Path, generated: Path):
    before = source_digest(str(source))
    load_images(source)
    assert source_digest(str(source)) == before
    (source / "Week5" / "Week5_29999").mkdir()
    assert source_digest(str(source)) != before
    assert source_digest("") == source_digest("")  # the demo: its parameters
    assert source_digest("").startswith("demo:")


def test_real_metadata_every_row_accounted_for_without_images(tmp_path: Path):
    """The shipped metadata (13,200 rows) parses cleanly; with no TIFFs every row is a
    missing file, none is dropped."""
    from cellstore.synth.plates import shipped_metadata

    images, rejected = load_images(shipped_metadata())
    assert images.num_rows == 0
    assert rejected.num_rows == 13_200
    assert set(rejected.column("reason").to_pylist()) == {"missing_file"}
    assert rejected.column("image_id").null_count == 0


def test_empty_source_builds_the_demo_once_with_progress(tmp_path: Path, monkeypatch):
    from cellstore.synth import demo as demo_module
    from cellstore.synth.plates import SynthParams

    monkeypatch.setattr(
        demo_module, "DEMO", SynthParams(plates=(PLATE,), sites=1, scale=0.05, wells="annotated")
    )
    steps: list[tuple[float, float | None]] = []
    ctx = context(tmp_path)
    ctx.progress = lambda advance=1, total=None: steps.append((advance, total))
    tables = load_stage("images")(source="", ctx=ctx)
    assert tables["images"].num_rows == 12
    assert all(
        p.startswith(str(tmp_path / "cache" / "demo_source"))
        for p in tables["images"].column("path_dapi").to_pylist()
    )
    assert sum(advance for advance, _ in steps) == 12 and steps[-1][1] == 12
    steps.clear()
    assert load_stage("moa")(source="", ctx=ctx).num_rows == 104
    assert steps == []  # the cached demo is reused, nothing generated


def test_build_publishes_sources_and_rebuilds_when_a_plate_is_added(source: Path, tmp_path: Path):
    from cellstore.engine.config import load_config
    from cellstore.engine.project import load_project
    from cellstore.engine.runner import Runner
    from cellstore.engine.warehouse import Warehouse

    warehouse = tmp_path / "warehouse"

    def build():
        config = load_config(REPO, warehouse=warehouse)
        runner = Runner(load_project(REPO), config, overrides={"source": str(source)})
        return {r.stage: r for r in runner.build(["images", "moa"]).results}

    first = build()
    assert all(first[name].status == "built" for name in ("images", "moa")), first
    # (one plate: the warning that some annotated treatments have no images is expected)
    assert not [
        c for r in first.values() for c in r.checks if not c.passed and c.severity == "error"
    ]
    con = Warehouse(warehouse).connect(read_only=True)
    try:
        assert con.execute("select count(*) from images").fetchone() == (12,)
        assert con.execute("select count(*) from images_rejected").fetchone() == (0,)
    finally:
        con.close()
    assert build()["images"].status == "up to date"
    (source / "Week5" / "Week5_29999").mkdir()  # a new plate folder
    assert build()["images"].status == "built"
