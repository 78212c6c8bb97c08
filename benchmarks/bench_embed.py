"""Embedding throughput: the embeddings stage's pipeline vs a bare forward pass, same crops.

Pipeline = what `stages/embeddings.py` runs: crops read from Parquet through DuckDB as Arrow
record batches → uint8 decode (numpy view on the Arrow buffer) → resize/normalise → the
trained and the untrained encoder → FLOAT[] columns → one zstd Parquet file.
Bare = the same two encoders' forward passes (eval, inference_mode, channels_last) on the
same number of crops already in memory as normalised float tensors, in the same batches.
Runs alternate (pipeline, bare, bare, pipeline, ...); medians are reported.

    python benchmarks/bench_embed.py                         # small_cnn, 48 px, 8192 crops
    python benchmarks/bench_embed.py --model resnet50 --size 96 --crops 2048
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_train import synthetic_cells  # noqa: E402

from cellstore.ssl.augment import prepare  # noqa: E402
from cellstore.ssl.data import write_crop_file  # noqa: E402
from cellstore.ssl.device import resolve_device  # noqa: E402
from cellstore.ssl.encoder import SimCLRModel, build_encoder  # noqa: E402
from cellstore.ssl.tables import embed_stage  # noqa: E402
from cellstore.ssl.train import atomic_save  # noqa: E402

MEAN, STD = (0.2, 0.2, 0.2), (0.2, 0.2, 0.2)


def checkpoint(folder: Path, model: str, size: int, seed: int) -> None:
    """initial.pt and last.pt in the layout the simclr stage publishes (two different inits)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, offset in (("initial.pt", 0), ("last.pt", 1)):
        torch.manual_seed(seed + offset)
        net = SimCLRModel(build_encoder(model), 256)
        config = {"encoder": model, "in_channels": 3, "projection_dim": 256, "size": size}
        config |= {"mean": MEAN, "std": STD, "crop_shape": None}
        atomic_save(
            {"model": net.state_dict(), "epoch": offset - 1, "config": config}, folder / name
        )


def run_pipeline(parquet: Path, artifact: Path, out: Path, batch: int, device: str) -> float:
    con = duckdb.connect()
    started = time.perf_counter()
    reader = con.sql(
        f"select cell_id::varchar as cell_id, image_id::varchar as image_id, plate, well, "
        f"crop, shape, dtype from read_parquet('{parquet}')"
    ).fetch_record_batch(8192)
    embed_stage(reader, artifact, out, device=device, batch_size=batch)
    seconds = time.perf_counter() - started
    con.close()
    out.unlink()
    return seconds


def run_bare(encoders: list, chunks: list[torch.Tensor], device: torch.device) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        for encoder in encoders:
            for x in chunks:
                encoder(x.to(device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--size", type=int, default=48, help="encoder input size (px)")
    parser.add_argument("--crop", type=int, default=48, help="stored crop size (px)")
    parser.add_argument("--crops", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, interleaved")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cells = synthetic_cells(args.crops, args.crop, seed=0)
        parquet = Path(write_crop_file(tmp / "crops.parquet", cells, row_group_size=2048).path)
        artifact = tmp / "artifact"
        checkpoint(artifact, args.model, args.size, seed=0)
        encoders = []
        for name in ("last.pt", "initial.pt"):
            state = torch.load(artifact / name, weights_only=False)
            net = SimCLRModel(build_encoder(args.model), 256)
            net.load_state_dict(state["model"])
            encoders.append(net.encoder.eval().to(device).to(memory_format=torch.channels_last))
        with torch.inference_mode():
            chunks = [
                prepare(torch.from_numpy(cells[i : i + args.batch]), args.size, MEAN, STD)
                .contiguous(memory_format=torch.channels_last)
                .to(device)
                for i in range(0, args.crops, args.batch)
            ]
        run_bare(encoders, chunks[:1], device)  # warm-up: allocator, oneDNN primitives
        run_pipeline(parquet, artifact, tmp / "warm.parquet", args.batch, device)
        times: dict[str, list[float]] = {"pipeline": [], "bare": []}
        for i in range(args.repeats):
            order = ("pipeline", "bare") if i % 2 == 0 else ("bare", "pipeline")
            for side in order:
                if side == "pipeline":
                    seconds = run_pipeline(parquet, artifact, tmp / "e.parquet", args.batch, device)
                else:
                    seconds = run_bare(encoders, chunks, device)
                times[side].append(seconds)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    n = 2 * args.crops  # two encoders
    print(
        f"bench_embed: {args.model} at {args.size} px (crops {args.crop} px), {args.crops} crops "
        f"× 2 encoders, batch {args.batch}, device {device}, {torch.get_num_threads()} threads, "
        f"{args.repeats} interleaved runs each"
    )
    print(f"{'loop':<10} {'crops/s':>9} {'median s':>9}")
    medians = {side: statistics.median(t) for side, t in times.items()}
    for side, seconds in medians.items():
        print(f"{side:<10} {n / seconds:>9.1f} {seconds:>9.2f}")
    overhead = medians["pipeline"] / medians["bare"] - 1
    print(f"pipeline overhead over the bare forward: {100 * overhead:+.1f} % (bar: <= 25 %)")
    print(f"process peak RSS {rss:.2f} GiB (both sides, one process)")


if __name__ == "__main__":
    main()
