"""The crops path on full-size fields: nuclei + crops throughput and memory, 1 vs 2 workers.

Usage: python benchmarks/bench_crops.py [--source DIR] [--fields 160] [--repeats 3]

Fields are full-size (1280×1024) synthetic plates from `cellstore.synth.generate()`
(generated once into --cache, reused) or any BBBC021-layout folder (--source). The crops
path is what turns raw fields into crops: the nuclei stage's work (read the 3 TIFFs, check
them, correct DAPI, detect nuclei, write a Parquet part) followed by the crops stage's work
(join the centres, read the 3 TIFFs again, correct and normalise, cut one 96×96×3 uint8
crop per nucleus, write Parquet parts). Both run through the stages' own driver code on a
dask LocalCluster of 1 or 2 single-threaded worker processes. The cluster is started (and
its workers import the imaging code) before the clock starts; its start time is reported.

Each run is its own subprocess, runs alternate 1, 2, 1, 2, ... worker(s), memory is touched
before each run (idle VM memory is slow to touch again, DESIGN §9), and the table reports
medians: fields/s over both passes, seconds per pass, CPU time per field of the workers
(summed) and of the driver (a load-independent cost: on two idle cores, fields/s can reach
at most 2000 / worker CPU ms per field), peak RSS of the driver and of the largest worker,
and the machine's load average during the run. The driver's peak is taken over the
timed passes only (setup: loading the images table, computing illumination in-process). A
last row runs 2 workers on half the fields (with the default source: one plate instead of
two): the driver's peak should not grow with the number of fields.
Bars: ≥ 15 fields/s with 2 workers, and 2 workers ≥ 1.7× one worker.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_PLATES = ["Week3_25421", "Week3_25441"]  # 32 annotated wells × 4 sites each


def ensure_source(cache: Path, n_fields: int) -> Path:
    """A full-size synthetic source with at least n_fields fields (generated once)."""
    from cellstore.synth import generate

    source = cache / "bench_crops_source"
    summary = source / "cellstore_synth.json"
    if summary.exists() and json.loads(summary.read_text())["n_fields"] >= n_fields:
        return source
    started = time.perf_counter()
    result = generate(source, plates=BENCH_PLATES, sites=4, scale=1.0, seed=0, wells="annotated")
    print(
        f"generated {result['n_fields']} full-size fields into {source} "
        f"in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    if result["n_fields"] < n_fields:
        raise SystemExit(f"only {result['n_fields']} fields available, asked for {n_fields}")
    return source


def touch_memory(megabytes: int = 1024) -> None:
    """Write to a large buffer in a throwaway process, so the VM's pages are warm for the
    next run (done outside the measured process: its peak RSS must not include it)."""
    code = f"import numpy as np; np.ones({megabytes} * 2**20 // 8).sum()"
    subprocess.run([sys.executable, "-c", code], check=True)


def peak_rss_mib() -> float:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss, not inherited from the
    process that spawned it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Restart this process's VmHWM from its current RSS (Linux: clear_refs 5), so the
    driver's peak covers the measured passes, not the setup before them."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def warm_worker() -> None:
    """Import what the tasks import, so the timed passes do not pay for it."""
    import pyarrow.parquet  # noqa: F401
    import scipy.ndimage  # noqa: F401
    import skimage.filters  # noqa: F401
    import skimage.segmentation  # noqa: F401
    import tifffile  # noqa: F401

    import cellstore.imaging.tasks  # noqa: F401


def run_once(source: Path, workers: int, n_fields: int, batch_size: int) -> dict:
    """One measurement (in a fresh process): illumination, then timed nuclei + crops passes."""
    import duckdb

    from cellstore.imaging.driver import (
        FIELD_COLUMNS,
        IlluminationSettings,
        build_illumination,
        run_field_tasks,
    )
    from cellstore.imaging.tasks import (
        CropSettings,
        NucleiSettings,
        crops_schema,
        crops_task,
        nuclei_schema,
        nuclei_task,
    )
    from cellstore.parallel import INLINE, TaskPool, task_pool
    from cellstore.sources.images import load_images

    images, _ = load_images(source)
    images = images.sort_by([("plate", "ascending"), ("image_id", "ascending")])
    images = images.slice(0, n_fields)
    con = duckdb.connect()
    con.register("images_arrow", images)
    con.execute("create table images as select * from images_arrow")
    illumination = build_illumination(
        con.table("images"), IlluminationSettings(), pool=TaskPool(INLINE)
    )
    con.register("illumination_arrow", illumination)
    con.execute("create table illumination as select * from illumination_arrow")
    fields = con.table("images").select(", ".join(FIELD_COLUMNS))

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with task_pool("", workers) as pool, tempfile.TemporaryDirectory() as scratch:
        pool.client.run(warm_worker)
        cluster_s = time.perf_counter() - started
        workers_cpu = sum(pool.client.run(cpu_seconds).values())
        driver_cpu = cpu_seconds()
        reset_peak_rss()
        t0 = time.perf_counter()
        nuclei = run_field_tasks(
            fields,
            con.table("illumination"),
            nuclei_task,
            NucleiSettings(),
            pool=pool,
            parts_dir=Path(scratch) / "nuclei",
            prefix="nuclei",
            schema=nuclei_schema(),
            batch_size=batch_size,
        )
        nuclei_s = time.perf_counter() - t0
        files = ", ".join(f"'{p}'" for p in nuclei.parts)
        con.execute(f"create table nuclei as select * from read_parquet([{files}])")
        t1 = time.perf_counter()
        crops = run_field_tasks(
            fields,
            con.table("illumination"),
            crops_task,
            CropSettings(),
            pool=pool,
            parts_dir=Path(scratch) / "crops",
            prefix="crops",
            schema=crops_schema(),
            centres=con.table("nuclei"),
            batch_size=batch_size,
        )
        crops_s = time.perf_counter() - t1
        driver_cpu = cpu_seconds() - driver_cpu
        workers_cpu = sum(pool.client.run(cpu_seconds).values()) - workers_cpu
        crop_bytes = sum(p.stat().st_size for p in crops.parts)
        worker_mib = max(pool.client.run(peak_rss_mib).values())
    return {
        "workers": workers,
        "fields": nuclei.n_fields,
        "cells": crops.n_rows,
        "rejected": len(nuclei.rejected),
        "cluster_s": cluster_s,
        "nuclei_s": nuclei_s,
        "crops_s": crops_s,
        "fields_per_s": nuclei.n_fields / (nuclei_s + crops_s),
        "worker_cpu_ms_per_field": 1000 * workers_cpu / nuclei.n_fields,
        "driver_cpu_ms_per_field": 1000 * driver_cpu / nuclei.n_fields,
        "crop_mib": crop_bytes / 2**20,
        "driver_peak_mib": peak_rss_mib(),
        "worker_peak_mib": worker_mib,
        "load": (load_before + os.getloadavg()[0]) / 2,
    }


def measure(source: Path, workers: int, n_fields: int, batch_size: int) -> dict:
    touch_memory()
    command = [
        sys.executable,
        __file__,
        "--child",
        json.dumps([str(source), workers, n_fields, batch_size]),
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"run failed ({workers} workers):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_row(runs: list[dict]) -> dict:
    row = dict(runs[0])
    for key in (
        "cluster_s",
        "nuclei_s",
        "crops_s",
        "fields_per_s",
        "driver_peak_mib",
        "worker_peak_mib",
        "load",
    ):
        row[key] = statistics.median(run[key] for run in runs)
    row["runs"] = len(runs)
    return row


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'workers':>7} {'fields':>6} {'cells':>7} {'runs':>4} {'fields/s':>8} "
        f"{'nuclei s':>8} {'crops s':>7} {'start s':>7} {'worker CPU ms/field':>19} "
        f"{'driver CPU ms/field':>19} {'driver MiB':>10} {'worker MiB':>10} {'load':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['workers']:>7} {r['fields']:>6} {r['cells']:>7} {r['runs']:>4} "
            f"{r['fields_per_s']:>8.1f} {r['nuclei_s']:>8.2f} {r['crops_s']:>7.2f} "
            f"{r['cluster_s']:>7.1f} {r['worker_cpu_ms_per_field']:>19.1f} "
            f"{r['driver_cpu_ms_per_field']:>19.1f} {r['driver_peak_mib']:>10.0f} "
            f"{r['worker_peak_mib']:>10.0f} {r['load']:>5.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="BBBC021-layout folder of full-size fields")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--fields", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        source, workers, n_fields, batch_size = json.loads(args.child)
        print(json.dumps(run_once(Path(source), workers, n_fields, batch_size)))
        return
    source = args.source or ensure_source(args.cache, args.fields)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}", file=sys.stderr)
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for repeat in range(args.repeats):
        for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
            runs[workers].append(measure(source, workers, args.fields, args.batch_size))
            print(json.dumps(runs[workers][-1]), file=sys.stderr)
    small = measure(source, 2, max(args.batch_size, args.fields // 2), args.batch_size)
    rows = [median_row(runs[1]), median_row(runs[2]), median_row([small])]
    print_table(rows)
    speedup = rows[1]["fields_per_s"] / rows[0]["fields_per_s"]
    print(
        f"\n2 workers: {rows[1]['fields_per_s']:.1f} fields/s (bar ≥ 15), "
        f"{speedup:.2f}× one worker (bar ≥ 1.7); BBBC021's 13,200 fields would take "
        f"{13200 / rows[1]['fields_per_s'] / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
