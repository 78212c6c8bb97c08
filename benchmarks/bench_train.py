"""SimCLR training throughput: the real pipeline vs a bare loop of the same model, plus MFU.

Pipeline = Parquet crops → CropStream (+ prefetch thread) → device as uint8 → two augmented
views → NT-Xent step (the loop body of cellstore.ssl.train). Bare = the same model, loss and
optimiser stepping on random views already on the device. Runs alternate (pipeline, bare,
bare, pipeline, ...) and the medians are reported. MFU = training FLOPs (3 × the forward
FLOPs that torch's FlopCounterMode counts) per second over the device's dense bf16 peak,
where the device is in PEAK_BF16.

    python benchmarks/bench_train.py                      # CPU: small_cnn, 48 px, 20 steps
    python benchmarks/bench_train.py --preset paper       # GPU: resnet50, 96 px, batch 256
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cellstore.ssl.augment import SimCLRAugment  # noqa: E402
from cellstore.ssl.data import CropStream, prefetch, write_crop_file  # noqa: E402
from cellstore.ssl.device import peak_memory, reset_peak_memory, resolve_device  # noqa: E402
from cellstore.ssl.encoder import SimCLRModel, build_encoder  # noqa: E402
from cellstore.ssl.loss import NTXentLoss  # noqa: E402
from cellstore.ssl.train import PRESETS, make_views, optimise, step_seed  # noqa: E402

# Dense bf16 peaks (FLOP/s) from the vendors' data sheets; the first matching name wins.
PEAK_BF16 = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("A100", 312e12),
]


def device_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for key, peak in PEAK_BF16 if key in name), None)


def synthetic_cells(n: int, box: int, seed: int) -> np.ndarray:
    """uint8 (n, 3, box, box) cell-like crops: a DAPI nucleus, a tubulin ring, an actin halo."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, box, box), np.uint8)
    yy, xx = np.mgrid[:box, :box].astype(np.float32)
    for start in range(0, n, 256):
        m = min(256, n - start)
        cx, cy = (box / 2 + rng.normal(0, box / 16, (2, m, 1, 1))).astype(np.float32)
        r = rng.uniform(box / 12, box / 6, (m, 1, 1)).astype(np.float32)
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / r**2  # (m, box, box)
        nucleus = np.exp(-d2)
        ring = np.exp(-((np.sqrt(d2) - 2.0) ** 2) * 2)
        halo = np.exp(-d2 / 9) * rng.uniform(0.5, 1, (m, box, box))
        stack = np.stack([nucleus, ring, halo], 1) * rng.uniform(120, 250, (m, 3, 1, 1))
        stack += rng.normal(8, 3, stack.shape)
        out[start : start + m] = np.clip(stack, 0, 255).astype(np.uint8)
    return out


def train_flops(model: torch.nn.Module, views: int, channels: int, size: int, device) -> float:
    """FLOPs of one training step on `views` inputs: 3 × forward (backward ≈ 2 × forward)."""
    from torch.utils.flop_counter import FlopCounterMode

    sample = torch.zeros(2, channels, size, size, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(sample)
    return 3.0 * counter.get_total_flops() * views / 2


def run_pipeline(stream, epoch, augment, forward, criterion, optimizer, device, warmup, steps):
    """Seconds for `steps` pipeline steps after `warmup` ones (the clock starts after warmup)."""
    batches = prefetch(stream.epoch(epoch))
    for step, crops in enumerate(batches):
        if step == warmup:
            sync(device)
            started = time.perf_counter()
        seeds = [step_seed(0, epoch, step, 0, v) for v in (0, 1)]
        optimise(forward, criterion, optimizer, make_views(augment, crops, seeds, device))
        if step + 1 == warmup + steps:
            break
    sync(device)
    return time.perf_counter() - started


def run_bare(views, forward, criterion, optimizer, device, warmup, steps):
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            started = time.perf_counter()
        optimise(forward, criterion, optimizer, views)
    sync(device)
    return time.perf_counter() - started


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), help="take model/size/batch from it")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--size", type=int, default=48, help="training input size (px)")
    parser.add_argument("--batch", type=int, default=256, help="crops per step (2 views each)")
    parser.add_argument("--crop", type=int, default=96, help="stored crop size (px)")
    parser.add_argument(
        "--steps", type=int, default=20, help="timed steps of each loop, split over the repeats"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before each run")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, interleaved")
    parser.add_argument("--buffer", type=int, default=4, help="shuffle buffer, in batches")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args()
    if args.preset:
        preset = PRESETS[args.preset]
        args.model, args.size, args.batch = preset["encoder"], preset["size"], preset["batch_size"]
    if args.threads:
        torch.set_num_threads(args.threads)
    per_run = max(1, args.steps // args.repeats)
    device = resolve_device(args.device)
    name, peak = device_peak(device)

    with tempfile.TemporaryDirectory() as tmp:
        n = args.batch * (args.warmup + per_run)
        started = time.perf_counter()
        files = [
            write_crop_file(
                Path(tmp) / f"crops{i}.parquet",
                synthetic_cells(n // 2, args.crop, seed=i),
                row_group_size=1024,
                first_cell=i * (n // 2),
            )
            for i in range(2)
        ]
        made = time.perf_counter() - started
        # a buffer of a few batches, so the timed steps really stream from the files
        buffer = max(2, args.buffer) * args.batch
        stream = CropStream(files, args.batch, seed=0, buffer_rows=buffer, drop_last=True)
        torch.manual_seed(0)
        model = SimCLRModel(build_encoder(args.model)).to(device)
        model.to(memory_format=torch.channels_last)  # as cellstore.ssl.train does
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        forward = torch.compile(model) if args.compile else model
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-5)
        criterion = NTXentLoss(0.1)
        augment = SimCLRAugment(args.size, [0.2] * 3, [0.2] * 3).to(device)
        views = torch.randn(2 * args.batch, 3, args.size, args.size, device=device)
        views = views.contiguous(memory_format=torch.channels_last)
        flops = train_flops(model, 2 * args.batch, 3, args.size, device)

        times: dict[str, list[float]] = {"pipeline": [], "bare": []}
        memory: dict[str, int] = {}
        for r in range(args.repeats):
            order = ["pipeline", "bare"] if r % 2 == 0 else ["bare", "pipeline"]
            for kind in order:
                reset_peak_memory(device)
                if kind == "pipeline":
                    seconds = run_pipeline(
                        stream, r, augment, forward, criterion, optimizer, device,
                        args.warmup, per_run,
                    )  # fmt: skip
                else:
                    seconds = run_bare(
                        views, forward, criterion, optimizer, device, args.warmup, per_run
                    )
                times[kind].append(seconds)
                memory[kind], measure = peak_memory(device)

    print(
        f"bench_train: {args.model} at {args.size} px (crops {args.crop} px), batch {args.batch}, "
        f"{per_run} timed steps × {args.repeats} interleaved runs, device {device} ({name}), "
        f"{torch.get_num_threads()} CPU threads; {n} synthetic crops written in {made:.1f} s"
    )
    print(f"{'loop':<10}{'cells/s':>10}{'s/step':>9}{'TFLOP/s':>9}{'MFU':>8}{'peak mem':>11}")
    rates = {}
    for kind in ("pipeline", "bare"):
        seconds = statistics.median(times[kind]) / per_run
        rates[kind] = args.batch / seconds
        tflops = flops / seconds / 1e12
        mfu = f"{flops / seconds / peak:.1%}" if peak else "n/a"
        mem = f"{memory[kind] / 2**30:.2f} GiB"
        print(f"{kind:<10}{rates[kind]:>10.1f}{seconds:>9.3f}{tflops:>9.3f}{mfu:>8}{mem:>11}")
    print(f"pipeline / bare = {rates['pipeline'] / rates['bare']:.2f}")
    print(
        f"cells/s counts crops (2 views each); peak mem = {measure}"
        + ("" if peak else "; MFU n/a: no known bf16 peak for this device")
    )


if __name__ == "__main__":
    main()
