"""The simclr and embeddings stages on a toy crops table: training log, checkpoints, exact
resume after kill -9, incremental embedding of a new plate, re-embedding after retraining,
and one-line errors for bad input."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, ToyProject

from cellstore.engine.artifacts import INPROGRESS

CROPS_STAGE = '''
import numpy as np
import pyarrow as pa
from cellstore.stage import stage

@stage
def crops(*, plates: str = "P1", per_plate: int = 192, box: int = 24):
    """Bright-disc and dim-ring cells, 8 per field, in 3 channels. Grain: cell_id."""
    rows = []
    yy, xx = np.mgrid[:box, :box] - box / 2
    r = np.hypot(yy, xx)
    for plate in plates.split(","):
        rng = np.random.default_rng([ord(c) for c in plate])
        for i in range(per_plate):
            kind = i % 2
            radius = rng.uniform(3, 6)
            cell = (r < radius) if kind else ((r > radius) & (r < radius + 2))
            image = np.stack([cell * rng.uniform(120, 255)] * 3) + rng.normal(0, 10, (3, box, box))
            rows.append({
                "image_id": f"{plate}-{i // 8}", "cell_id": f"{plate}-{i}", "plate": plate,
                "well": f"A{i % 4 + 1:02d}",
                "crop": np.clip(image, 0, 255).astype(np.uint8).tobytes(),
                "shape": [3, box, box], "dtype": "uint8",
            })
    schema = pa.schema([("image_id", pa.string()), ("cell_id", pa.string()),
                        ("plate", pa.string()), ("well", pa.string()), ("crop", pa.binary()),
                        ("shape", pa.list_(pa.int32())), ("dtype", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)
'''

# 192 crops of 24 px, batch 32: 6 steps an epoch, about a second each epoch on a CPU.
SETTINGS = """
[stages.simclr]
size = 24
batch_size = 32
epochs = {epochs}
warmup_epochs = 1
max_cells = 0
lr = 0.001

[stages.crops]
plates = "{plates}"
"""


def simclr_project(root: Path, epochs: int = 3, plates: str = "P1") -> ToyProject:
    """A toy crops stage feeding the repository's simclr and embeddings stages."""
    project = ToyProject(root)
    project.py("crops", CROPS_STAGE)
    for name in ("simclr", "embeddings"):
        shutil.copy(REPO / "stages" / f"{name}.py", root / "stages" / f"{name}.py")
    (root / "schemas").mkdir(exist_ok=True)
    for name in ("simclr", "training_log", "embeddings"):
        shutil.copy(REPO / "schemas" / f"{name}.yml", root / "schemas" / f"{name}.yml")
    project.config(SETTINGS.format(epochs=epochs, plates=plates))
    return project


def statuses(result) -> dict[str, str]:
    return {r.stage: str(r.status) for r in result.results}


def artifact(project: ToyProject) -> Path:
    return Path(project.query("select distinct simclr_run from embeddings")[0][0])


def published(project: ToyProject) -> Path:
    run = project.query(
        "select artifact_dir from cellstore_meta.stage_runs "
        "where stage = 'simclr' and status = 'built' order by started_at desc"
    )
    return Path(run[0][0])


def test_training_log_checkpoints_and_both_models_embedded(tmp_path):
    project = simclr_project(tmp_path / "p", epochs=2)
    result = project.build()
    assert result.ok, result.first_failure()
    log = project.query(
        "select epoch, loss, lr, cells_per_s, cells, device, pos_top1 "
        "from training_log order by epoch"
    )
    assert [row[0] for row in log] == [0, 1]
    assert all(np.isfinite(row[1]) and row[3] > 0 and row[4] == 192 for row in log)
    assert log[0][2] == pytest.approx(1e-3) and log[0][5] == "cpu"
    checkpoints = dict(project.query("select checkpoint, epoch from simclr"))
    assert checkpoints == {"initial": -1, "final": 1}
    folder = published(project)
    assert (folder / "initial.pt").is_file() and (folder / "last.pt").is_file()

    counts = dict(project.query("select model, count(*) from embeddings group by model"))
    assert counts == {"simclr": 192, "simclr_untrained": 192}
    dims = project.query("select distinct len(embedding) from embeddings")
    assert dims == [(256,)]  # the small CNN's pooled feature h, not the projection
    runs = project.query("select distinct simclr_run from embeddings")
    assert runs == [(folder.name,)]

    # the vectors are the encoder's h of each crop: recompute two by hand from the checkpoint
    from cellstore.ssl.train import load_model

    model, config = load_model(folder / "last.pt")
    rows = project.query(
        "select c.crop, e.embedding from crops c join embeddings e using (cell_id) "
        "where e.model = 'simclr' order by cell_id limit 2"
    )
    crops = torch.from_numpy(
        np.stack([np.frombuffer(crop, np.uint8).reshape(3, 24, 24) for crop, _ in rows])
    )
    from cellstore.ssl.augment import prepare

    with torch.inference_mode():
        expected = model.encoder.eval()(prepare(crops, 24, config["mean"], config["std"]))
    np.testing.assert_allclose(np.array([e for _, e in rows]), expected.numpy(), atol=1e-5)

    # trained and untrained differ; the untrained vectors come from initial.pt
    diff = project.query(
        "select max(abs(list_cosine_similarity(a.embedding, b.embedding))) from embeddings a "
        "join embeddings b using (cell_id) where a.model = 'simclr' and "
        "b.model = 'simclr_untrained'"
    )[0][0]
    assert diff < 0.9999

    again = project.build()
    assert again.ok and set(statuses(again).values()) == {"up to date"}


def test_new_plate_embeds_only_its_cells_and_retraining_re_embeds_all(tmp_path):
    project = simclr_project(tmp_path / "p", epochs=1)
    assert project.build().ok
    before = dict(project.query("select cell_id || model, embedding from embeddings"))
    run = artifact(project)

    # a new plate, encoder kept (simclr not selected): only the new cells are embedded
    project.config(SETTINGS.format(epochs=1, plates="P1,P2"))
    result = project.build(["crops", "embeddings"])
    assert result.ok, result.first_failure()
    assert statuses(result)["embeddings"] == "incremental"
    rows = project.query("select cell_id || model, embedding, simclr_run, plate from embeddings")
    assert len(rows) == 2 * 384 and {r[2] for r in rows} == {str(run)}
    for key, vector, _, plate in rows:
        if plate == "P1":
            assert vector == before[key]  # not recomputed
    runs = project.query(
        "select n_rows from cellstore_meta.stage_runs where stage = 'embeddings' "
        "order by started_at desc limit 1"
    )
    assert runs == [(2 * 192,)]  # the run embedded the new plate's cells only

    # the encoder retrains on both plates: every cell is embedded again by the new run
    result = project.build()
    assert result.ok, result.first_failure()
    assert statuses(result)["simclr"] == statuses(result)["embeddings"] == "built"
    runs = project.query("select distinct simclr_run from embeddings")
    assert len(runs) == 1 and runs[0][0] != str(run)
    assert project.query("select count(*) from embeddings") == [(2 * 384,)]


def test_killed_training_resumes_and_ends_with_identical_weights(tmp_path):
    epochs = 4
    reference = simclr_project(tmp_path / "reference", epochs=epochs)
    assert reference.build(["crops", "simclr"]).ok

    project = simclr_project(tmp_path / "killed", epochs=epochs)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cellstore", "build", "--select", "crops", "--select", "simclr"],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    folder_glob = f"{INPROGRESS}*/epoch_0000.pt"
    artifacts = project.warehouse_dir / "artifacts" / "simclr"
    deadline = time.monotonic() + 300
    while not list(artifacts.glob(folder_glob)):
        assert proc.poll() is None, "the build ended before the first epoch was saved"
        assert time.monotonic() < deadline, "no epoch was ever saved"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    [inprogress] = [p.parent for p in artifacts.glob(folder_glob)]
    saved = sorted(p.name for p in inprogress.glob("epoch_*.pt"))
    assert f"epoch_{epochs - 1:04d}.pt" not in saved, "killed too late: training had finished"
    first_row = torch.load(inprogress / saved[0], weights_only=False)["log"][0]

    result = project.build(["crops", "simclr"])
    assert result.ok, result.first_failure()
    # the resumed run kept the epochs done before the kill instead of redoing them
    kept = project.query("select seconds, loss from training_log where epoch = 0")
    assert kept == [(first_row["seconds"], first_row["loss"])]
    assert [r[0] for r in project.query("select epoch from training_log order by 1")] == list(
        range(epochs)
    )
    resumed = torch.load(published(project) / "last.pt", weights_only=False)["model"]
    uninterrupted = torch.load(published(reference) / "last.pt", weights_only=False)["model"]
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("per_plate = 0", "the crops table is empty"),
        ('device = "cuda"', "CUDA is not available"),
        ('encoder = "vgg"', "vgg"),
    ],
)
def test_bad_input_is_one_line_and_publishes_nothing(tmp_path, setting, message):
    if "cuda" in setting and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    project = simclr_project(tmp_path / "p", epochs=1)
    section = "crops" if "per_plate" in setting else "simclr"
    text = (project.root / "cellstore.toml").read_text()
    text = text.replace(f"[stages.{section}]\n", f"[stages.{section}]\n{setting}\n")
    (project.root / "cellstore.toml").write_text(text)
    done = project.cli("build")
    assert done.returncode == 1
    assert message in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    tables = {r[0] for r in project.query("select table_name from duckdb_tables()")}
    assert not {"simclr", "training_log", "embeddings"} & tables
