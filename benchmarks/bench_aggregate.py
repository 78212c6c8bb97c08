"""Cells → wells (mean, median): cellstore's aggregate vs polars streaming and pycytominer.

Usage: python benchmarks/bench_aggregate.py [--cells 1000000] [--features 512] [--repeats 3]
       [--layouts wide,vector] [--operations mean,median] [--install-pycytominer]

Every side reads the same per-cell Parquet file (float32, CellProfiler-style names, cells of
a well contiguous as in per-image exports) and returns one row per (Metadata_Plate,
Metadata_Well), in two layouts: "wide" (one column per feature) and "vector" (the same
values as one FLOAT[] column `features`, as an embedding table stores them).
- cellstore: `cellstore.profiling.aggregate.aggregate` on the Parquet file (pyarrow
  decoding, numpy float64 grouped sums / exact medians by partition, streamed by row group).
- polars: `scan_parquet(...).group_by(...).agg(mean | median).collect(engine="streaming")`;
  for vectors, the list is spread into columns first (polars cannot aggregate lists
  element-wise).
- pycytominer: `pycytominer.aggregate` on `pandas.read_parquet`, wide only, in its own venv
  (skipped with a note if the venv is missing; `--install-pycytominer` creates it).
Each run is its own subprocess. Runs are interleaved (side order rotates per repeat),
memory is touched before each run (idle VM memory is slow to touch again, DESIGN §9), and
the table reports medians of wall time and of peak RSS (the worker's own VmHWM, read from
/proc right after the aggregation: wait4's ru_maxrss also counts the parent's pages the
child inherited before exec) with their ratios to cellstore, and the largest difference of
each side's result from cellstore's.
Bar (issue 9): cellstore at or ahead of polars streaming in both layouts and operations,
at <= 1 GB peak.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

STRATA = ["Metadata_Plate", "Metadata_Well"]
SIDES = ("cellstore", "polars", "pycytominer")
OPERATIONS = ("mean", "median")
LAYOUTS = ("wide", "vector")
VECTOR = "features"


def feature_names(n: int) -> list[str]:
    compartments = ("Cells", "Cytoplasm", "Nuclei")
    return [f"{compartments[i % 3]}_Feature_{i:04d}" for i in range(n)]


def make_cells(path: Path, n_cells: int, n_features: int, n_plates: int, seed: int) -> None:
    """Write n_cells x n_features float32 cells over n_plates x 60 wells, in row groups."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    wells = [f"{r}{c:02d}" for r in "BCDEFG" for c in range(2, 12)]
    n_wells = n_plates * len(wells)
    # Cells per well vary (as in real plates); each well's cells are contiguous.
    well_of_cell = np.sort(rng.integers(0, n_wells, n_cells))
    names = feature_names(n_features)
    offsets = rng.normal(size=(n_wells, n_features)).astype(np.float32)
    tmp = path.with_suffix(".tmp")
    writer = None
    for start in range(0, n_cells, 100_000):
        stop = min(start + 100_000, n_cells)
        index = well_of_cell[start:stop]
        values = offsets[index] + rng.normal(size=(stop - start, n_features)).astype(np.float32)
        columns = {
            "Metadata_Plate": pa.array([f"Plate_{i // len(wells):03d}" for i in index]),
            "Metadata_Well": pa.array([wells[i % len(wells)] for i in index]),
        }
        columns.update({name: values[:, j] for j, name in enumerate(names)})
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    tmp.replace(path)


def make_vectors(wide: Path, path: Path) -> None:
    """The same cells with their features as one FLOAT[] column `features` (row groups kept)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pq.ParquetFile(wide)
    tmp = path.with_suffix(".tmp")
    writer = None
    for group in range(source.num_row_groups):
        table = source.read_row_group(group)
        names = [n for n in table.column_names if n not in STRATA]
        block = np.column_stack([table.column(n).to_numpy() for n in names])  # (n, d)
        n, d = block.shape
        offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
        vectors = pa.ListArray.from_arrays(offsets, pa.array(block.reshape(-1)))
        out = pa.table({**{s: table.column(s) for s in STRATA}, VECTOR: vectors})
        if writer is None:
            writer = pq.ParquetWriter(tmp, out.schema)
        writer.write_table(out)
    assert writer is not None
    writer.close()
    tmp.replace(path)


def run_worker(side: str, operation: str, layout: str, data: Path, out: Path) -> None:
    """One measured aggregation (read + aggregate, imports excluded).

    Prints {"seconds": s, "peak_kib": VmHWM after the aggregation}.

    The result is written wide (one column per feature) so the sides can be compared.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if side == "cellstore":
        import pandas  # noqa: F401  (pyarrow imports it on a first pa.array(); imports excluded)

        from cellstore.profiling.aggregate import aggregate

        start = time.perf_counter()
        names = pq.read_schema(data).names
        if layout == "wide":
            features = [n for n in names if n not in STRATA]
            result = aggregate(None, [data], STRATA, features, operation)
        else:
            result = aggregate(None, [data], STRATA, operation=operation, vector=VECTOR)
        seconds = time.perf_counter() - start
        peak = peak_kib()
        if layout == "vector":
            vectors = result.column(VECTOR).combine_chunks()
            width = len(vectors[0]) if len(vectors) else 0
            matrix = vectors.flatten().to_numpy().reshape(len(vectors), width)
            result = result.drop_columns([VECTOR])
            for j in range(width):
                result = result.append_column(f"f{j:04d}", pa.array(matrix[:, j]))
        pq.write_table(result.drop_columns(["n_cells"]), out)
    elif side == "polars":
        import polars as pl

        start = time.perf_counter()
        frame = pl.scan_parquet(data)
        if layout == "wide":
            features = [n for n in frame.collect_schema().names() if n not in STRATA]
        else:
            # Polars has no element-wise aggregation of list columns: spread the vector
            # into one column per position (fixed-size array → struct → columns).
            width = frame.select(pl.col(VECTOR).first().list.len()).collect().item()
            features = [f"f{j:04d}" for j in range(width)]
            frame = frame.select(
                *STRATA,
                pl.col(VECTOR).list.to_array(width).arr.to_struct(fields=features).struct.unnest(),
            )
        aggregated = pl.col(features).mean() if operation == "mean" else pl.col(features).median()
        result = frame.group_by(STRATA).agg(aggregated).collect(engine="streaming")
        seconds = time.perf_counter() - start
        peak = peak_kib()
        result.write_parquet(out)
    else:
        import pandas as pd
        from pycytominer import aggregate

        start = time.perf_counter()
        cells = pd.read_parquet(data)
        features = [n for n in cells.columns if n not in STRATA]
        result = aggregate(cells, strata=STRATA, features=features, operation=operation)
        seconds = time.perf_counter() - start
        peak = peak_kib()
        result.to_parquet(out)
    print(json.dumps({"seconds": seconds, "peak_kib": peak}))


def peak_kib() -> int:
    """This process's resident-set high-water mark (VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def pycytominer_python(venv: Path, install: bool) -> Path | None:
    """The venv's python, created with `--install-pycytominer`; None (skip) if missing."""
    python = venv / "bin" / "python"
    if not python.exists() and install:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "pycytominer"], check=True)
    return python if python.exists() else None


def warm_memory(gigabytes: float) -> None:
    """Touch (then free) this much memory in a throwaway process."""
    if gigabytes <= 0:
        return
    code = f"import numpy as np; a = np.ones(int({gigabytes} * 2**30 // 8)); print(a[-1])"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float, float, float]:
    """(seconds inside the worker, wall seconds of the process, peak RSS in GiB, CPU seconds).

    CPU = user + system time of the whole process (all threads); on a shared machine it
    varies less than wall time.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(command)} failed:\n{stderr.decode()}")
    report = json.loads(stdout.decode().strip().splitlines()[-1])
    cpu = usage.ru_utime + usage.ru_stime
    return report["seconds"], wall, report["peak_kib"] / 2**20, cpu


def compare(first: Path, second: Path) -> float:
    """Largest absolute difference between two sides' results (features matched by position)."""
    import numpy as np
    import pandas as pd

    a = pd.read_parquet(first).sort_values(STRATA).reset_index(drop=True)
    b = pd.read_parquet(second).sort_values(STRATA).reset_index(drop=True)
    if a[STRATA].values.tolist() != b[STRATA].values.tolist():
        sys.exit(f"{first.name} and {second.name} disagree on the wells")
    x = a[[c for c in a.columns if c not in STRATA]].to_numpy(dtype=np.float64)
    y = b[[c for c in b.columns if c not in STRATA]].to_numpy(dtype=np.float64)
    return float(np.abs(x - y).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--plates", type=int, default=55, help="60 wells each")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layouts", default="wide,vector", help="wide and/or vector (FLOAT[])")
    parser.add_argument("--operations", default="mean,median")
    parser.add_argument("--sides", default=",".join(SIDES), help="which of " + ", ".join(SIDES))
    parser.add_argument("--warm-gb", type=float, default=8.0)
    parser.add_argument("--data", type=Path, default=Path("/tmp/cellstore-bench-aggregate"))
    parser.add_argument("--pycytominer-venv", type=Path, default=Path("/tmp/pycyto-venv"))
    parser.add_argument(
        "--install-pycytominer", action="store_true", help="create the venv if it is missing"
    )
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--operation", choices=OPERATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--layout", choices=LAYOUTS, help=argparse.SUPPRESS)
    parser.add_argument("--parquet", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.operation, args.layout, args.parquet, args.out)
        return

    layouts = [x for x in args.layouts.split(",") if x]
    operations = [x for x in args.operations.split(",") if x]
    args.data.mkdir(parents=True, exist_ok=True)
    stem = f"cells_{args.cells}x{args.features}_{args.plates}plates"
    files = {"wide": args.data / f"{stem}.parquet", "vector": args.data / f"{stem}_vector.parquet"}
    if not files["wide"].exists():
        print(f"writing {files['wide']} ...", flush=True)
        make_cells(files["wide"], args.cells, args.features, args.plates, seed=0)
    if "vector" in layouts and not files["vector"].exists():
        print(f"writing {files['vector']} ...", flush=True)
        make_vectors(files["wide"], files["vector"])
    wanted = [x for x in args.sides.split(",") if x]
    if "cellstore" not in wanted:
        sys.exit("--sides must include cellstore (the ratios are to it)")
    pythons = {s: sys.executable for s in ("cellstore", "polars") if s in wanted}
    pycytominer = pycytominer_python(args.pycytominer_venv, args.install_pycytominer)
    if "pycytominer" not in wanted:
        pass
    elif pycytominer is None:
        print(
            f"note: pycytominer skipped, no venv at {args.pycytominer_venv} (create it with "
            f"`python -m venv {args.pycytominer_venv} && {args.pycytominer_venv}/bin/pip "
            "install pycytominer`, or pass --install-pycytominer)",
            flush=True,
        )
    else:
        pythons["pycytominer"] = str(pycytominer)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    results: dict[tuple[str, str, str], list[tuple[float, float, float, float]]] = {}
    for repeat in range(args.repeats):
        sides = [s for s in SIDES if s in pythons]
        # Rotate the side order per repeat so no side always runs first (or last).
        order = sides[repeat % len(sides) :] + sides[: repeat % len(sides)]
        for layout in layouts:
            for operation in operations:
                for side in order:
                    if side == "pycytominer" and layout != "wide":
                        continue  # pycytominer aggregates wide pandas columns only
                    warm_memory(args.warm_gb)
                    out = args.data / f"result_{side}_{layout}_{operation}.parquet"
                    command = [
                        pythons[side], __file__, "--worker", side, "--operation", operation,
                        "--layout", layout, "--parquet", str(files[layout]), "--out", str(out),
                    ]  # fmt: skip
                    run = measure(command, env)
                    results.setdefault((side, layout, operation), []).append(run)
                    print(
                        f"repeat {repeat + 1} {layout:6s} {operation:6s} {side:11s} "
                        f"{run[0]:7.2f} s (process {run[1]:.1f} s, CPU {run[3]:.1f} s), "
                        f"peak RSS {run[2] * 1024:.0f} MB",
                        flush=True,
                    )
    print(
        f"\n{args.cells:,} cells x {args.features} float32 features → {args.plates * 60} wells, "
        f"medians of {args.repeats} interleaved runs (seconds inside the worker: read + "
        "aggregate; peak = the worker's VmHWM after aggregating)"
    )
    print(
        "| layout | operation | side | seconds | peak MB | time / cellstore | "
        "peak / cellstore | max abs diff vs cellstore |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for layout in layouts:
        for operation in operations:
            ours = results[("cellstore", layout, operation)]
            t_ours = statistics.median(r[0] for r in ours)
            m_ours = statistics.median(r[2] for r in ours)
            for side in SIDES:
                runs = results.get((side, layout, operation))
                if not runs:
                    continue
                seconds = statistics.median(r[0] for r in runs)
                peak = statistics.median(r[2] for r in runs)
                diff = (
                    compare(
                        args.data / f"result_cellstore_{layout}_{operation}.parquet",
                        args.data / f"result_{side}_{layout}_{operation}.parquet",
                    )
                    if side != "cellstore"
                    else 0.0
                )
                print(
                    f"| {layout} | {operation} | {side} | {seconds:.2f} | {peak * 1024:.0f} | "
                    f"{seconds / t_ours:.2f} | {peak / m_ours:.2f} | "
                    f"{'-' if side == 'cellstore' else f'{diff:.1e}'} |"
                )


if __name__ == "__main__":
    main()
