"""The SimCLR loop: logs, checkpoints, exact resume, NaN stop, bad checkpoints, devices."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cellstore.ssl import train as train_module
from cellstore.ssl.data import CropFile, write_crop_file
from cellstore.ssl.device import resolve_device
from cellstore.ssl.encoder import SimCLRModel, build_encoder
from cellstore.ssl.loss import NTXentLoss
from cellstore.ssl.train import (
    PRESETS,
    NonFiniteLoss,
    learning_rate,
    load_checkpoint,
    load_model,
    resolve_config,
    train,
    train_processes,
)

TINY = dict(size=16, batch_size=16, epochs=3, warmup_epochs=1, max_cells=None, lr=1e-3)
KEYS = {
    "epoch",
    "loss",
    "lr",
    "cells_per_s",
    "seconds",
    "peak_device_memory_bytes",
    "memory_measure",
    "device",
    "pos_top1",
}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster here and immune to busy neighbours."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def crops(tmp_path: Path) -> list[CropFile]:
    """48 random 3×20×20 crops in two files (row groups of 8): 3 steps of 16 per epoch."""
    rng = np.random.default_rng(0)
    return [
        write_crop_file(
            tmp_path / f"crops{i}.parquet",
            rng.integers(0, 256, (24, 3, 20, 20), dtype=np.uint8),
            row_group_size=8,
            first_cell=24 * i,
        )
        for i in range(2)
    ]


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_logs_one_row_per_epoch_and_checkpoints_each(crops, tmp_path):
    folder = tmp_path / "ck"
    rows = train(crops, folder, device="cpu", **TINY)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    for row in rows:
        assert KEYS <= row.keys()
        assert math.isfinite(row["loss"]) and row["cells_per_s"] > 0 and row["seconds"] > 0
        assert row["device"] == "cpu" and row["memory_measure"] == "process_peak_rss"
        assert row["peak_device_memory_bytes"] > 0 and 0 <= row["pos_top1"] <= 1
        assert row["cells"] == 48
    assert [r["lr"] for r in rows] == [1e-3, 1e-3, pytest.approx(5e-4)]
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["epoch_0001.pt", "epoch_0002.pt", "initial.pt", "last.pt"]
    last, newest = load_checkpoint(folder / "last.pt"), load_checkpoint(folder / "epoch_0002.pt")
    assert last["epoch"] == 2 and states_equal(last["model"], newest["model"])
    assert last["log"] == rows
    model, config = load_model(folder / "last.pt")
    assert isinstance(model, SimCLRModel) and config["size"] == 16 and len(config["mean"]) == 3


def test_loss_decreases_on_a_tiny_set(crops, tmp_path):
    rows = train(crops, tmp_path / "ck", device="cpu", **{**TINY, "epochs": 4})
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_initial_checkpoint_holds_the_untrained_weights(crops, tmp_path):
    train(crops, tmp_path / "ck", device="cpu", **{**TINY, "epochs": 1})
    initial, _ = load_model(tmp_path / "ck" / "initial.pt")
    torch.manual_seed(TINY.get("seed", 0))
    fresh = SimCLRModel(build_encoder("small_cnn"))
    assert states_equal(initial.state_dict(), fresh.state_dict())
    trained, _ = load_model(tmp_path / "ck" / "last.pt")
    assert not states_equal(initial.state_dict(), trained.state_dict())


def test_resume_after_a_kill_ends_with_identical_weights(crops, tmp_path):
    straight = train(crops, tmp_path / "a", device="cpu", **TINY)

    def kill_after_epoch_1(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        train(crops, tmp_path / "b", device="cpu", on_epoch=kill_after_epoch_1, **TINY)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    seen = []
    resumed = train(crops, tmp_path / "b", device="cpu", on_epoch=seen.append, **TINY)
    assert [r["epoch"] for r in seen] == [2]  # epochs 0 and 1 were not trained again
    assert [r["epoch"] for r in resumed] == [0, 1, 2]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert states_equal(a["model"], b["model"])  # torch.equal, tensor by tensor
    assert train(crops, tmp_path / "b", device="cpu", **TINY) == resumed  # done: nothing to do


def test_nan_loss_stops_with_the_epoch_and_keeps_the_last_good_checkpoint(
    crops, tmp_path, monkeypatch
):
    calls = []

    class NaNAfterEpoch0(NTXentLoss):
        def forward(self, z1, z2, **kwargs):
            calls.append(1)
            loss, top1 = super().forward(z1, z2, **kwargs)
            return (loss * float("nan"), top1) if len(calls) > 4 else (loss, top1)

    monkeypatch.setattr(train_module, "NTXentLoss", NaNAfterEpoch0)
    folder = tmp_path / "ck"
    with pytest.raises(NonFiniteLoss, match="loss is nan at epoch 1 step 1") as err:
        train(crops, folder, device="cpu", **TINY)  # 3 steps per epoch: call 5 = epoch 1 step 1
    assert "epoch_0000.pt" in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in folder.glob("epoch_*")) == ["epoch_0000.pt"]
    assert load_checkpoint(folder / "last.pt")["epoch"] == 0
    assert all(
        torch.isfinite(v).all() for v in load_checkpoint(folder / "last.pt")["model"].values()
    )


def test_a_checkpoint_from_another_architecture_is_a_one_line_error(crops, tmp_path):
    folder = tmp_path / "ck"
    train(crops, folder, device="cpu", **{**TINY, "epochs": 1})
    with pytest.raises(ValueError) as err:
        train(crops, folder, device="cpu", **{**TINY, "epochs": 2, "encoder": "resnet18"})
    assert "encoder='small_cnn'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="size=16"):
        train(crops, folder, device="cpu", **{**TINY, "epochs": 2, "size": 24})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_one_line_error(crops, tmp_path):
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match="CUDA is not available") as err:
            train(crops, tmp_path / "ck", device=name, **TINY)
        assert "\n" not in str(err.value)
    assert not (tmp_path / "ck").exists()


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device("tpu")


def test_too_few_crops_for_a_batch_is_an_error(crops, tmp_path):
    with pytest.raises(ValueError, match="no full batch of 64"):
        train(crops, tmp_path / "ck", device="cpu", **{**TINY, "batch_size": 64})


def test_learning_rate_is_constant_then_cosine_to_zero():
    config = resolve_config("paper")
    assert learning_rate(config, 0) == learning_rate(config, 9.99) == 3e-4
    assert learning_rate(config, 10 + 295) == pytest.approx(1.5e-4)
    assert learning_rate(config, 600) == pytest.approx(0, abs=1e-12)
    lrs = [learning_rate(config, e) for e in range(10, 600)]
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))


def test_presets():
    paper = resolve_config("paper")
    assert (paper.encoder, paper.size, paper.batch_size, paper.temperature, paper.epochs) == (
        "resnet50",
        96,
        256,
        0.1,
        600,
    )
    assert (paper.lr, paper.weight_decay, paper.warmup_epochs, paper.max_cells) == (
        3e-4,
        1e-5,
        10,
        None,
    )
    demo = resolve_config("demo")
    assert (demo.encoder, demo.size, demo.max_cells) == ("small_cnn", 32, 30_000)
    assert resolve_config("demo", epochs=5).epochs == 5
    assert set(PRESETS) == {"paper", "demo"}
    with pytest.raises(ValueError, match="unknown setting"):
        resolve_config("demo", learning_rate=1)
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_config("huge")


@pytest.mark.slow
def test_ddp_training_on_two_cpu_processes(crops, tmp_path):
    rows = train_processes(2, crops, tmp_path / "ck", device="cpu", **{**TINY, "epochs": 2})
    assert [r["epoch"] for r in rows] == [0, 1]
    assert {r["processes"] for r in rows} == {2}
    assert rows[0]["cells"] == 48  # 3 steps × 16 crops over both processes
    model, _ = load_model(tmp_path / "ck" / "last.pt")
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


@pytest.mark.gpu
def test_train_on_cuda_uses_bf16_and_reports_cuda_memory(crops, tmp_path):
    rows = train(crops, tmp_path / "ck", device="cuda", **{**TINY, "epochs": 1})
    assert rows[0]["device"].startswith("cuda")
    assert rows[0]["memory_measure"] == "cuda_max_memory_allocated"
    assert rows[0]["peak_device_memory_bytes"] > 0


@pytest.mark.gpu
def test_bf16_autocast_step_with_channels_last():
    model = SimCLRModel(build_encoder("resnet18")).cuda().to(memory_format=torch.channels_last)
    x = torch.rand(8, 3, 48, 48, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        h, z = model(x)
    assert z.dtype == torch.bfloat16
    assert model.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    loss = NTXentLoss()(*z.float().chunk(2))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(model.encoder.conv1.weight.grad).all()
