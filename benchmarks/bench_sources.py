"""Time demo generation and the loader on the full BBBC021 metadata (13,200 fields).

    .venv/bin/python benchmarks/bench_sources.py [--workdir DIR] [--workers N] [--repeats R]
                                                 [--skip-demo | --skip-ingest]

1. Generates the embedded demo (cellstore.synth.DEMO: 962 fields at 640x512) — bar: < 2 min.
2. Generates every field of the real metadata (55 plates x 60 wells x 4 sites = 13,200
   fields, 39,600 TIFFs) at scale 0.05, then loads it with cellstore.sources.load_images
   `repeats` times — bar: < 60 s. Each load runs in a fresh process (no warm imports);
   the first load follows the generation (files in the page cache), as after a copy.
Prints one table row per measurement, wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOAD_SNIPPET = """
import json, resource, sys, time
from pathlib import Path
start = time.perf_counter()
from cellstore.sources import load_images
images, rejected = load_images(Path(sys.argv[1]))
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
                  "accepted": images.num_rows, "rejected": rejected.num_rows}))
"""


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the render workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_generate(out: Path, **params) -> tuple[dict, float, float]:
    from cellstore.synth import generate

    cpu, wall = cpu_seconds(), time.perf_counter()
    summary = generate(out, **params)
    return summary, time.perf_counter() - wall, cpu_seconds() - cpu


def timed_load(source: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SNIPPET, str(source)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (removed)")
    parser.add_argument("--workers", type=int, default=2, help="generation processes")
    parser.add_argument("--repeats", type=int, default=3, help="loads of the full metadata")
    parser.add_argument("--skip-demo", action="store_true", help="only the ingest benchmark")
    parser.add_argument("--skip-ingest", action="store_true", help="only the demo benchmark")
    args = parser.parse_args()

    from cellstore.synth import DEMO

    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_sources.", dir=args.workdir))
    rows: list[tuple[str, str, str, str, str]] = []
    try:
        if not args.skip_demo:
            summary, wall, cpu = timed_generate(
                work / "demo",
                sites=DEMO.sites,
                scale=DEMO.scale,
                seed=DEMO.seed,
                wells=DEMO.wells,
                density=DEMO.density,
                workers=args.workers,
            )
            size = disk_bytes(work / "demo") / 1e9
            rows.append(
                (
                    f"generate demo (workers={args.workers})",
                    f"{summary['n_fields']} fields, {summary['n_nuclei']} nuclei, {size:.2f} GB",
                    f"{wall:.1f}",
                    f"{cpu:.1f}",
                    "< 120",
                )
            )
            load = timed_load(work / "demo")
            rows.append(
                (
                    "load demo",
                    f"{load['accepted']} accepted, {load['rejected']} rejected",
                    f"{load['wall']:.1f}",
                    f"{load['cpu']:.1f}",
                    "",
                )
            )
            shutil.rmtree(work / "demo")

        if not args.skip_ingest:
            ingest(work, args, rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows)


def ingest(work: Path, args: argparse.Namespace, rows: list) -> None:
    """Generate all 13,200 fields at scale 0.05, then load them `args.repeats` times."""
    summary, wall, cpu = timed_generate(
        work / "full", sites=4, scale=0.05, wells="all", workers=args.workers
    )
    rows.append(
        (
            f"generate full metadata at scale 0.05 (workers={args.workers})",
            f"{summary['n_fields']} fields, {summary['n_images']} TIFFs",
            f"{wall:.1f}",
            f"{cpu:.1f}",
            "",
        )
    )
    loads = [timed_load(work / "full") for _ in range(args.repeats)]
    for i, load in enumerate(loads, start=1):
        rows.append(
            (
                f"load full metadata, run {i}",
                f"{load['accepted']} accepted, {load['rejected']} rejected",
                f"{load['wall']:.1f}",
                f"{load['cpu']:.1f}",
                "< 60",
            )
        )
    rows.append(
        (
            "load full metadata, median",
            "",
            f"{statistics.median(x['wall'] for x in loads):.1f}",
            f"{statistics.median(x['cpu'] for x in loads):.1f}",
            "< 60",
        )
    )


def print_table(rows: list) -> None:
    header = ("measurement", "size", "wall s", "cpu s", "bar s")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
