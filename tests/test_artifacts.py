"""Artifact stages keep a failed or killed run's folder, resume from it, publish on success."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import REPO, ToyProject
from rich.console import Console

from cellstore.engine.artifacts import INPROGRESS, gc_artifacts
from cellstore.engine.warehouse import Warehouse

# First run: one checkpoint, then a crash. A resumed run finds it and finishes.
FLAKY_TRAINER = """
from cellstore.stage import stage

@stage(artifact=True, unhashed=("workers",))
def model(*, epochs: int = 2, workers: int = 1, ctx):
    found = sorted(p.name for p in ctx.artifact_dir.iterdir())
    (ctx.artifact_dir / "runs.log").open("a").write(f"resume={ctx.is_resume} found={found}\\n")
    if not (ctx.artifact_dir / "epoch-1.ckpt").exists():
        (ctx.artifact_dir / "epoch-1.ckpt").write_text("weights after epoch 1")
        raise RuntimeError("GPU fell off the bus")
    (ctx.artifact_dir / f"epoch-{epochs}.ckpt").write_text("final weights")
"""


def artifact_folders(toy: ToyProject, stage: str = "model") -> list[str]:
    folder = toy.warehouse_dir / "artifacts" / stage
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_failed_artifact_run_resumes_with_its_files(tmp_path):
    toy = ToyProject(tmp_path / "toy")
    toy.py("model", FLAKY_TRAINER)
    first = toy.build()
    assert not first.ok and "GPU fell off the bus" in first.first_failure().error
    kept = artifact_folders(toy)
    assert len(kept) == 1 and kept[0].startswith(INPROGRESS)
    # A device/process count setting is unhashed: the resume keeps the same fingerprint.
    toy.config("[stages.model]\nworkers = 8\n")
    second = toy.build()
    assert second.ok, second.first_failure()
    published = toy.query("select distinct artifact_dir from model")[0][0]
    folder = toy.warehouse_dir / "artifacts" / "model" / os.path.basename(published)
    assert folder.is_dir() and not folder.name.startswith(INPROGRESS)
    assert artifact_folders(toy) == [folder.name]  # the in-progress folder was published
    log = (folder / "runs.log").read_text().splitlines()
    assert log == ["resume=False found=[]", "resume=True found=['epoch-1.ckpt', 'runs.log']"]
    paths = {r[0] for r in toy.query("select path from model")}
    assert paths == {"epoch-1.ckpt", "epoch-2.ckpt", "runs.log"}


def test_another_fingerprint_starts_from_an_empty_folder(tmp_path):
    toy = ToyProject(tmp_path / "toy")
    toy.py("model", FLAKY_TRAINER)
    assert not toy.build().ok
    toy.config("[stages.model]\nepochs = 3\n")  # hashed: a new fingerprint
    assert not toy.build().ok  # no checkpoint in its own folder: crashes after epoch 1
    folders = artifact_folders(toy)
    assert len(folders) == 2 and all(f.startswith(INPROGRESS) for f in folders)
    # gc keeps the current fingerprint's folder only.
    doomed = gc_artifacts(Console(quiet=True), Warehouse(toy.warehouse_dir), False, toy.root)
    assert len(doomed) == 1
    assert toy.build().ok  # resumes the current (epochs = 3) folder
    assert toy.query("select count(*) from model where path = 'epoch-3.ckpt'") == [(1,)]


SLOW_TRAINER = """
import time
from cellstore.stage import stage

@stage(artifact=True)
def model(*, ctx):
    checkpoint = ctx.artifact_dir / "epoch-1.ckpt"
    if not checkpoint.exists():
        checkpoint.write_text("weights after epoch 1")
        time.sleep(600)  # killed here
    (ctx.artifact_dir / "resumed.txt").write_text(str(ctx.is_resume))
"""


def test_killed_build_resumes_in_the_next_run(tmp_path):
    toy = ToyProject(tmp_path / "toy")
    toy.py("model", SLOW_TRAINER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cellstore", "build"],
        cwd=toy.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    checkpoints = toy.warehouse_dir / "artifacts" / "model"
    deadline = time.monotonic() + 120
    while not list(checkpoints.glob(f"{INPROGRESS}*/epoch-1.ckpt")):
        assert proc.poll() is None, "the build ended before it was killed"
        assert time.monotonic() < deadline, "the stage never wrote its checkpoint"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    result = toy.build()
    assert result.ok, result.first_failure()
    assert toy.query("select count(*) from model where path = 'resumed.txt'") == [(1,)]
    folder = checkpoints / os.path.basename(toy.query("select artifact_dir from model")[0][0])
    assert (folder / "resumed.txt").read_text() == "True"
    assert (folder / "epoch-1.ckpt").read_text() == "weights after epoch 1"


ENCODER = """
from cellstore.stage import stage

@stage(artifact=True)
def encoder(*, epochs: int = 1, ctx):
    (ctx.artifact_dir / "weights.txt").write_text(str(epochs))
"""


def test_gc_deletes_versions_no_snapshot_references(tmp_path):
    toy = ToyProject(tmp_path / "toy")
    toy.py("encoder", ENCODER)
    assert toy.build().ok
    first = artifact_folders(toy, "encoder")
    toy.config("[stages.encoder]\nepochs = 2\n")
    assert toy.build().ok
    both = artifact_folders(toy, "encoder")
    assert len(both) == 2
    # The first version is still referenced by a live snapshot (time travel): kept.
    warehouse = Warehouse(toy.warehouse_dir)
    assert gc_artifacts(Console(quiet=True), warehouse, False, toy.root) == []
    # Once its snapshots expire, only the current version stays.
    gc = toy.cli("gc", "--older-than-days", "0", check=True)
    assert "artifact folders deleted: 1" in gc.stdout
    remaining = artifact_folders(toy, "encoder")
    assert remaining == sorted(set(both) - set(first))
    current = toy.query("select distinct artifact_dir from encoder")[0][0]
    assert os.path.basename(current) == remaining[0]
