"""The SimCLR training loop: crops → device → augment → NT-Xent step, checkpointed every epoch."""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from cellstore.ssl.augment import SimCLRAugment
from cellstore.ssl.data import CropFile, CropStream, prefetch
from cellstore.ssl.device import peak_memory, reset_peak_memory, resolve_device
from cellstore.ssl.encoder import SimCLRModel, build_encoder, check_state_dict
from cellstore.ssl.loss import NTXentLoss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting that changes what is learned (device and process count do not)."""

    encoder: str = "small_cnn"
    size: int = 48  # training input size (px): crops are resized to it by the random crop
    batch_size: int = 256  # crops per step, over all processes (2 views each)
    epochs: int = 2
    warmup_epochs: float = 1  # constant-lr phase; then cosine to 0 at the end of the last epoch
    lr: float = 3e-4
    weight_decay: float = 1e-5
    temperature: float = 0.1
    projection_dim: int = 256
    max_cells: int | None = 30_000  # train on a random subset (None: every crop)
    seed: int = 0
    weights: str | None = None  # a local state-dict file for the encoder (None: random init)
    mean: tuple[float, ...] | None = None  # per-channel normalisation; None: estimated
    std: tuple[float, ...] | None = None
    buffer_bytes: int = 256 * 2**20  # host shuffle buffer
    stats_crops: int = 2048  # crops sampled to estimate mean/std


PRESETS: dict[str, dict[str, Any]] = {
    # Perakis et al. 2021 / DESIGN §6: ResNet-50, 96 px, batch 256, τ 0.1, 600 epochs, Adam
    # 3e-4, weight decay 1e-5, 10 constant epochs then cosine; every crop. For a GPU.
    "paper": dict(
        encoder="resnet50",
        size=96,
        batch_size=256,
        epochs=600,
        warmup_epochs=10,
        temperature=0.1,
        max_cells=None,
    ),
    # A CPU demo: small CNN at 32 px on a 30k-crop subset, 3 epochs: ~390 crops/s on 2 cores
    # → ~4 min, and embedding the demo's 97k crops twice (trained + control) ~1.5 min. On the
    # demo plates 32 px reached the NSCB that 48 px did (0.761 whitened) in 3.9 instead of
    # ~9 min of training (benchmarks/bench_simclr.py --size 32 vs a 48 px build).
    "demo": dict(
        encoder="small_cnn",
        size=32,
        batch_size=256,
        epochs=3,
        warmup_epochs=1,
        temperature=0.1,
        max_cells=30_000,
    ),
}

# Settings that fix the architecture: a checkpoint that differs in one cannot be resumed.
ARCHITECTURE = ("encoder", "size", "projection_dim", "in_channels")


def resolve_config(preset: str = "demo", **overrides: Any) -> TrainConfig:
    """A preset's TrainConfig with overrides applied; unknown names are an error."""
    if preset not in PRESETS:
        raise ValueError(f"train: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"train: unknown setting(s) {unknown}; known: {sorted(known)}")
    config = replace(TrainConfig(), **{**PRESETS[preset], **overrides})
    if config.epochs < 1 or config.batch_size < 2 or config.warmup_epochs < 0:
        raise ValueError(
            f"train: need epochs >= 1, batch_size >= 2, warmup_epochs >= 0; got {config.epochs}, "
            f"{config.batch_size}, {config.warmup_epochs}"
        )
    return config


def learning_rate(config: TrainConfig, progress: float) -> float:
    """lr at `progress` epochs: constant for warmup_epochs, then cosine to 0 at `epochs`."""
    if progress < config.warmup_epochs:
        return config.lr
    span = max(config.epochs - config.warmup_epochs, 1e-9)
    fraction = min((progress - config.warmup_epochs) / span, 1.0)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * fraction))


def step_seed(seed: int, epoch: int, step: int, rank: int, view: int) -> int:
    """The augmentation seed of one view of one step: a pure function of its coordinates."""
    return int(np.random.SeedSequence([seed, epoch, step, rank, view]).generate_state(1)[0])


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the last completed epoch's checkpoint is kept."""


class Distributed:
    """This process's place in a torch.distributed job (a single process when not in one).

    Uses an initialised default group as is, or starts one from torchrun's environment
    (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): gloo on CPU, nccl on CUDA.
    """

    def __init__(self, device_type: str) -> None:
        self.owns_group = False
        if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
            self.owns_group = True
        self.active = dist.is_initialized()
        self.rank = dist.get_rank() if self.active else 0
        self.world_size = dist.get_world_size() if self.active else 1
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()


def estimate_stats(
    files: Sequence[Any], config: TrainConfig
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (of crops / 255) from a seeded sample of about stats_crops."""
    stream = CropStream(files, batch_size=1, buffer_bytes=config.buffer_bytes)
    n = min(config.stats_crops, stream.total_rows)
    stream = CropStream(
        files,
        batch_size=max(1, min(n, stream.buffer_rows // 2)),
        seed=config.seed,
        buffer_bytes=config.buffer_bytes,
    )
    total = sq = count = 0.0
    seen = 0
    for batch in stream.epoch(0):
        x = batch.double().div_(255).transpose(0, 1).flatten(1)  # (C, pixels)
        total, sq = total + x.sum(1), sq + (x * x).sum(1)
        count += x.shape[1]
        seen += len(batch)
        if seen >= n:
            break
    mean = total / count
    std = (sq / count - mean * mean).clamp_min(1e-12).sqrt().clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())


def checkpoint_path(folder: Path, epoch: int) -> Path:
    return folder / f"epoch_{epoch:04d}.pt"


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, fsync, os.replace: readers see the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def link_last(folder: Path, target: Path) -> None:
    """Point last.pt at target atomically (a hard link; a copy where links are not possible)."""
    tmp = folder / f".last.pt.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.link(target, tmp)
    except OSError:
        shutil.copyfile(target, tmp)
    os.replace(tmp, folder / "last.pt")


def latest_checkpoint(folder: Path) -> Path | None:
    """The highest completed epoch's checkpoint in folder (temporary files are ignored)."""
    done = sorted(folder.glob("epoch_[0-9][0-9][0-9][0-9].pt"))
    return done[-1] if done else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint dict (model, optimizer, epoch, config, log), CPU tensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no such file {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"checkpoint: cannot read {path}: {type(exc).__name__}") from None


def load_model(path: str | Path) -> tuple[SimCLRModel, dict[str, Any]]:
    """The SimCLRModel of a checkpoint (train mode off) and its config (size, mean, std, ...)."""
    state = load_checkpoint(path)
    config = state["config"]
    model = SimCLRModel(
        build_encoder(config["encoder"], config["in_channels"]), config["projection_dim"]
    )
    check_state_dict(model, state["model"], str(path))
    model.load_state_dict(state["model"])
    return model.eval(), config


def make_views(
    augment: SimCLRAugment, crops: torch.Tensor, seeds: Sequence[int], device: torch.device
) -> torch.Tensor:
    """Host uint8 crops (B, C, H, W) → the device (as uint8) → views (2B, C, size, size).

    Views are [view 0 of every crop; view 1 of every crop], each drawn with its seed.
    """
    if device.type == "cuda":
        crops = crops.pin_memory().to(device, non_blocking=True)
    views = torch.cat([augment(crops, seed=seed) for seed in seeds])  # (2B, C, size, size)
    # channels_last: ~1.4x faster convolutions on a CPU (oneDNN) as well as on CUDA
    return views.contiguous(memory_format=torch.channels_last)


def optimise(
    forward: nn.Module,
    criterion: NTXentLoss,
    optimizer: torch.optim.Optimizer,
    views: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One NT-Xent update on views (2B, C, H, W); returns the detached (loss, top-1).

    bf16 autocast on CUDA (the loss itself in float32). A non-finite loss raises
    NonFiniteLoss before the update, so the weights stay as they were.
    """
    cuda = views.device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext():
        _, z = forward(views)  # (2B, projection_dim)
    z1, z2 = z.float().chunk(2)  # (B, projection_dim) each
    loss, top1 = criterion(z1, z2, return_accuracy=True)
    if not torch.isfinite(loss):
        raise NonFiniteLoss(f"loss is {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), top1


def check_architecture(path: Path, saved: dict[str, Any], wanted: dict[str, Any]) -> None:
    """One-line error when a checkpoint was trained with another architecture."""
    for key in ARCHITECTURE:
        if saved.get(key) != wanted[key]:
            raise ValueError(
                f"checkpoint {path}: trained with {key}={saved.get(key)!r}, this run has "
                f"{key}={wanted[key]!r}; use another checkpoint folder"
            )


def train(
    files: Sequence[CropFile | str | Path | tuple[str, int]],
    checkpoints: str | Path,
    *,
    preset: str = "demo",
    device: str = "auto",
    compile: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    **settings: Any,
) -> list[dict[str, Any]]:
    """Train SimCLR on crops and return the training log, one row per epoch (all epochs).

    files: the crops table's Parquet files. checkpoints: a folder; each completed epoch is
    written atomically as epoch_NNNN.pt (model, optimiser, log; the newest two are kept),
    last.pt points at the newest, initial.pt holds the untrained weights (the control). A
    rerun resumes after the last completed epoch (more `epochs` continue a finished run; the
    schedule follows the new total); a folder of another architecture is an error.
    Every epoch's randomness (shuffle order, augmentation) is a function of (seed, epoch), so
    a resumed run ends with the weights of an uninterrupted one (bit for bit on CPU).
    settings: TrainConfig fields overriding the preset. device: auto | cpu | cuda | cuda:N;
    channels_last everywhere; on CUDA bf16 autocast, torch.compile when compile=True. Under
    torchrun (or train_processes) each process trains on its shard with
    DistributedDataParallel.
    on_epoch(row) is called after each epoch's checkpoint is saved.
    """
    config = resolve_config(preset, **settings)
    folder = Path(checkpoints)
    device = resolve_device(device)
    job = Distributed(device.type)
    if device.type == "cuda" and job.active and device.index is None:
        device = torch.device("cuda", job.local_rank)
    try:
        return _train(files, folder, config, device, job, compile, on_epoch)
    finally:
        job.close()


def _train(
    files: Sequence[Any],
    folder: Path,
    config: TrainConfig,
    device: torch.device,
    job: Distributed,
    compile_model: bool,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> list[dict[str, Any]]:
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True

    # data: this rank's shard of the crops, full batches only
    if config.batch_size % job.world_size:
        raise ValueError(
            f"train: batch_size {config.batch_size} is not divisible by {job.world_size} processes"
        )
    per_rank = config.batch_size // job.world_size
    stream = CropStream(
        files,
        per_rank,
        seed=config.seed,
        buffer_bytes=config.buffer_bytes,
        max_cells=config.max_cells,
        rank=job.rank,
        world_size=job.world_size,
        drop_last=True,
    )
    steps = stream.steps_per_epoch()
    if steps == 0:
        raise ValueError(
            f"train: {stream.n_cells} crops make no full batch of {config.batch_size}; "
            "lower batch_size or add crops"
        )
    in_channels = stream.shape[0]
    if stream.shape[1:] != (config.size, config.size):
        log.info(
            "crops are %s px; the random resized crop resizes them to the input size %d px",
            "×".join(map(str, stream.shape[1:])),
            config.size,
        )

    # model: seeded init, identical on every rank
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        encoder = build_encoder(config.encoder, in_channels, weights=config.weights)
        model = SimCLRModel(encoder, config.projection_dim)
    model.to(device)  # before the optimiser, so its state lives on the device too
    model.to(memory_format=torch.channels_last)  # faster convolutions on CUDA and on CPU

    # optimiser
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    # resume: the newest completed epoch in the folder, if any; else keep the initial weights
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {**asdict(config), "in_channels": in_channels}
    latest = latest_checkpoint(folder)
    rows: list[dict[str, Any]] = []
    first_epoch = 0
    if latest is not None:
        state = load_checkpoint(latest)
        check_architecture(latest, state["config"], wanted)
        check_state_dict(model, state["model"], str(latest))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        mean, std = state["config"]["mean"], state["config"]["std"]
        rows, first_epoch = list(state["log"]), state["epoch"] + 1
        log.info("simclr: resuming after epoch %d from %s", state["epoch"], latest)
    elif config.mean is not None and config.std is not None:
        mean, std = config.mean, config.std
    else:
        mean, std = estimate_stats(files, config)
    run_config = {**wanted, "mean": tuple(mean), "std": tuple(std), "crop_shape": stream.shape}
    if latest is None and job.rank == 0:
        initial = {"model": model.state_dict(), "epoch": -1, "config": run_config}
        atomic_save(initial, folder / "initial.pt")  # the untrained control
    job.barrier()

    # the device side: DDP, compile, augmentation, loss
    forward: nn.Module = model
    if job.active:
        forward = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if cuda else None
        )
    if compile_model:
        forward = torch.compile(forward)
    augment = SimCLRAugment(config.size, mean, std).to(device)
    criterion = NTXentLoss(config.temperature)

    # loop: one epoch = this rank's shard; views are drawn on the device
    for epoch in range(first_epoch, config.epochs):
        model.train()
        reset_peak_memory(device)
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        top1_sum = torch.zeros((), device=device)
        epoch_lr = learning_rate(config, epoch)
        for step, crops in enumerate(prefetch(stream.epoch(epoch))):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, epoch + step / steps)
            seeds = [step_seed(config.seed, epoch, step, job.rank, view) for view in (0, 1)]
            views = make_views(augment, crops, seeds, device)  # (2B, C, size, size)
            try:
                loss, top1 = optimise(forward, criterion, optimizer, views)
            except NonFiniteLoss as exc:
                kept = latest_checkpoint(folder)
                raise NonFiniteLoss(
                    f"train: {exc} at epoch {epoch} step {step}; stopped, the last good "
                    f"checkpoint is {kept or 'none (no epoch completed)'}"
                ) from None
            loss_sum += loss
            top1_sum += top1
        seconds = time.perf_counter() - started
        memory, measured = peak_memory(device)
        row = {
            "epoch": epoch,
            "loss": float(loss_sum) / steps,
            "lr": epoch_lr,
            "cells_per_s": steps * config.batch_size / seconds,
            "seconds": seconds,
            "peak_device_memory_bytes": memory,
            "memory_measure": measured,
            "device": str(device),
            "processes": job.world_size,
            "pos_top1": float(top1_sum) / steps,
            "steps": steps,
            "cells": steps * config.batch_size,
        }
        rows.append(row)

        # save: rank 0 writes the epoch atomically, then every rank goes on
        if job.rank == 0:
            path = checkpoint_path(folder, epoch)
            atomic_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "config": run_config,
                    "log": rows,
                },
                path,
            )
            link_last(folder, path)
            for old in sorted(folder.glob("epoch_[0-9][0-9][0-9][0-9].pt"))[:-2]:
                old.unlink()  # keep the newest two epochs
        job.barrier()
        log.info("simclr epoch %d: %s", epoch, row)
        if on_epoch is not None:
            on_epoch(row)
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process(rank: int, processes: int, port: int, args: tuple, kwargs: dict) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(processes),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    if resolve_device(kwargs.get("device", "auto")).type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes))
    train(*args, **kwargs)


def train_processes(
    processes: int,
    files: Sequence[Any],
    checkpoints: str | Path,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """train() in `processes` DDP processes started with torch.multiprocessing.spawn.

    On CUDA each process takes one GPU (cuda:rank); on CPU they share the cores (gloo).
    kwargs are train()'s (on_epoch must be picklable). Returns the log from the last checkpoint.
    """
    if processes <= 1:
        return train(files, checkpoints, **kwargs)
    import torch.multiprocessing as mp

    files = [f if isinstance(f, CropFile | tuple) else str(f) for f in files]
    mp.spawn(
        _process,
        args=(processes, _free_port(), (files, str(checkpoints)), kwargs),
        nprocs=processes,
        join=True,
    )
    return list(load_checkpoint(Path(checkpoints) / "last.pt")["log"])
