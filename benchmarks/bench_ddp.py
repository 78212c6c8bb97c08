"""SimCLR training throughput of the real training loop on 1 process and on N (DDP).

Each run is `cellstore.ssl.train.train_processes(n, ...)`: crops from Parquet, per-process
shards, augmentation on the device, NT-Xent with negatives gathered across processes, one
checkpoint per epoch. Two epochs of `--steps` steps each; the second epoch's cells/s is
reported (the first pays for cuDNN autotuning and allocator warm-up). On CUDA one process
per GPU (nccl); on a CPU the processes share the cores (gloo), which shows the overhead of
DDP, not a speed-up.

    python benchmarks/bench_ddp.py --preset paper --steps 30          # GPUs: 1 and all
    python benchmarks/bench_ddp.py --preset demo --size 24 --batch 64 --steps 4 --devices 1,2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_train import synthetic_cells  # noqa: E402

from cellstore.ssl.data import write_crop_file  # noqa: E402
from cellstore.ssl.device import resolve_device  # noqa: E402
from cellstore.ssl.train import PRESETS, train_processes  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    parser.add_argument("--size", type=int, default=None, help="input px (default: preset's)")
    parser.add_argument("--batch", type=int, default=None, help="global batch (preset's)")
    parser.add_argument("--steps", type=int, default=30, help="steps per epoch")
    parser.add_argument("--devices", default="1,all", help="process counts, e.g. 1,2 or 1,all")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    preset = PRESETS[args.preset]
    size = args.size or preset["size"]
    batch = args.batch or preset["batch_size"]
    available = torch.cuda.device_count() if device.type == "cuda" else 2
    counts = sorted(
        {available if c == "all" else int(c) for c in args.devices.split(",") if c.strip()}
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n_crops = args.steps * batch
        cells = synthetic_cells(n_crops, size, seed=0)
        files = [write_crop_file(tmp / "crops.parquet", cells, row_group_size=1024)]
        for n in counts:
            started = time.perf_counter()
            log = train_processes(
                n,
                files,
                tmp / f"ck{n}",
                preset=args.preset,
                device=args.device,
                size=size,
                batch_size=batch,
                epochs=2,
                warmup_epochs=2,
                max_cells=None,
                stats_crops=256,
            )
            wall = time.perf_counter() - started
            last = log[-1]
            rows.append((n, last["cells_per_s"], last["seconds"], wall, last))
    base = rows[0][1]
    print(
        f"bench_ddp: preset {args.preset}, {size} px, global batch {batch}, {args.steps} steps "
        f"an epoch, device {device.type}"
    )
    print(f"{'processes':>9} {'cells/s':>9} {'epoch s':>8} {'wall s':>7} {'speed-up':>8} "
          f"{'peak mem GiB':>12} {'loss':>7}")  # fmt: skip
    for n, rate, seconds, wall, last in rows:
        print(
            f"{n:>9} {rate:>9.1f} {seconds:>8.2f} {wall:>7.1f} {rate / base:>7.2f}x "
            f"{last['peak_device_memory_bytes'] / 2**30:>12.2f} {last['loss']:>7.3f}"
        )
    print("cells/s of the second epoch; peak mem: rank 0's", rows[0][4]["memory_measure"])


if __name__ == "__main__":
    main()
