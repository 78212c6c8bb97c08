"""Image stages on an external dask cluster: fields/s with 1 and 2 worker processes, and a
paper estimate for all of BBBC021 (13,200 full-size fields) and a 10x larger screen.

Usage: python benchmarks/bench_scaling.py [--plates Week3_25421] [--sites 2] [--scale 1.0]
                                         [--repeats 2] [--out DIR]

A synthetic source in the real layout is generated once (full-size fields by default). The
`images` stage is built once inline; then, alternating 1, 2, 1, 2 ... workers, a fresh copy
of that warehouse gets `cellstore build --select illumination,nuclei,crops,cell_features
--scheduler tcp://127.0.0.1:PORT` against a real cluster: `dask scheduler` + N `dask worker`
CLI processes (single-threaded, no nanny), started before the clock. Reported: medians of
wall seconds and fields/s of the four image stages, the speed-up, worker-seconds per field,
peak worker RSS and the load average. The estimate divides the measured worker-seconds per
field by the workers, times the measured parallel efficiency of 2 workers; it ignores the
scheduler and the shared file system, which a real cluster must also scale.
The machine may be shared: read the ratios (and the load average) rather than absolutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the cluster launcher the tests use

BBBC021_FIELDS = 13_200
IMAGE_STAGES = "illumination,nuclei,crops,cell_features"


def cellstore(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "cellstore", *args], cwd=REPO, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"cellstore {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def worker_peak_rss(cluster) -> int:
    import resource

    with cluster.client() as client:
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return max(peaks.values()) * 1024


def one_run(base: Path, source: Path, n_workers: int, scratch: Path) -> dict:
    from dask_cluster_support import DaskCluster

    warehouse = scratch / f"warehouse-{n_workers}-{time.monotonic_ns()}"
    shutil.copytree(base, warehouse)
    cluster = DaskCluster(n_workers=n_workers, log_dir=scratch / "logs").start()
    try:
        load = os.getloadavg()[0]
        started = time.perf_counter()
        cellstore(
            "build", "--select", IMAGE_STAGES, "--source", str(source),
            "--warehouse", str(warehouse), "--scheduler", cluster.address,
        )  # fmt: skip
        wall = time.perf_counter() - started
        peak = worker_peak_rss(cluster)
    finally:
        cluster.close()
    shutil.rmtree(warehouse, ignore_errors=True)
    return {"wall": wall, "peak": peak, "load": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plates", default="Week3_25421")
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from cellstore.engine.warehouse import Warehouse
    from cellstore.synth import generate

    scratch = args.out or Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    source = scratch / "source"
    if not source.exists():
        generate(source, plates=args.plates.split(","), sites=args.sites, scale=args.scale,
                 wells="annotated")  # fmt: skip
    base = scratch / "base"
    if not base.exists():
        cellstore("build", "--select", "images", "--source", str(source),
                  "--warehouse", str(base), "--scheduler", "inline")  # fmt: skip
    con = Warehouse(base).connect(read_only=True)
    n_fields = con.execute("select count(*) from images").fetchone()[0]
    con.close()

    runs: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for n in (1, 2):  # interleaved, so both sides see the same load
            runs[n].append(one_run(base, source, n, scratch))
            print(f"  {n} worker(s): {runs[n][-1]['wall']:.1f} s", flush=True)

    print(f"\n{n_fields} fields (scale {args.scale}), medians of {args.repeats} runs")
    print("| workers | wall s | fields/s | worker-s/field | peak worker RSS | load avg |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for n, rows in runs.items():
        wall = statistics.median(r["wall"] for r in rows)
        summary[n] = wall
        print(
            f"| {n} | {wall:.1f} | {n_fields / wall:.2f} | {wall * n / n_fields:.2f} | "
            f"{max(r['peak'] for r in rows) / 2**20:.0f} MiB | "
            f"{statistics.median(r['load'] for r in rows):.1f} |"
        )
    speedup = summary[1] / summary[2]
    efficiency = speedup / 2
    per_field = summary[1] / n_fields  # worker-seconds per field, one worker
    print(f"\nspeed-up 2 vs 1 worker: {speedup:.2f}x (parallel efficiency {efficiency:.0%})")
    print(f"\npaper estimate from {per_field:.2f} worker-s/field at efficiency {efficiency:.0%}:")
    print("| screen | fields | workers | hours |")
    print("|---|---|---|---|")
    for name, fields in (("BBBC021", BBBC021_FIELDS), ("10x screen", 10 * BBBC021_FIELDS)):
        for workers in (1, 8, 32, 128):
            eff = 1.0 if workers == 1 else efficiency
            hours = fields * per_field / (workers * eff) / 3600
            print(f"| {name} | {fields:,} | {workers} | {hours:.2f} |")
        need = fields * per_field / (3600 * max(efficiency, 1e-9))
        print(f"| {name} | {fields:,} | {need:.0f} for 1 h | 1 |")


if __name__ == "__main__":
    main()
