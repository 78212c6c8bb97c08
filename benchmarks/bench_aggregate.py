"""Cells → wells (mean, median): cellstore's aggregate vs pycytominer.aggregate.

Usage: python benchmarks/bench_aggregate.py [--cells 1000000] [--features 512] [--repeats 3]

cellstore's side is `cellstore.profiling.aggregate.aggregate` on `read_parquet(...)`: means in
DuckDB SQL (one scan), exact medians by numpy partition on column slices (one DuckDB scan per
slice, `--columns-per-pass` or the library's default).

Both sides read the same Parquet file of per-cell features (float32, CellProfiler-style
names, cells of a well contiguous as in per-image exports) and return one row per
(Metadata_Plate, Metadata_Well). Each run is its own subprocess; pycytominer runs in its
own virtual environment (created with `pip install pycytominer` if missing). Runs are
interleaved (side order alternates per repeat), memory is touched before each run (idle VM
memory is slow to touch again, DESIGN §9), and the table reports medians of wall time and
of peak RSS (the child's ru_maxrss) with their ratios. Results of both sides are compared.
Bar: cellstore faster than pycytominer at <= 1/3 of its peak memory.
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
SIDES = ("cellstore", "pycytominer")
OPERATIONS = ("mean", "median")


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


def run_worker(
    side: str, operation: str, data: Path, out: Path, columns_per_pass: int | None
) -> None:
    """One measured aggregation (read + aggregate, imports excluded); prints {"seconds": s}."""
    if side == "cellstore":
        import duckdb
        import pyarrow.parquet as pq

        from cellstore.profiling.aggregate import aggregate

        start = time.perf_counter()
        con = duckdb.connect()
        names = [r[0] for r in con.execute(f"describe from read_parquet('{data}')").fetchall()]
        features = [n for n in names if n not in STRATA]
        per_pass = columns_per_pass if operation == "median" else None
        source = f"read_parquet('{data}')"
        result = aggregate(con, source, STRATA, features, operation, columns_per_pass=per_pass)
        seconds = time.perf_counter() - start
        pq.write_table(result.drop_columns(["n_cells"]), out)
    else:
        import pandas as pd
        from pycytominer import aggregate

        start = time.perf_counter()
        cells = pd.read_parquet(data)
        features = [n for n in cells.columns if n not in STRATA]
        result = aggregate(cells, strata=STRATA, features=features, operation=operation)
        seconds = time.perf_counter() - start
        result.to_parquet(out)
    print(json.dumps({"seconds": seconds}))


def ensure_pycytominer(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "pycytominer"], check=True)
    return python


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
    seconds = json.loads(stdout.decode().strip().splitlines()[-1])["seconds"]
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, wall, usage.ru_maxrss / 2**20, cpu  # ru_maxrss is in KiB on Linux


def compare(first: Path, second: Path) -> float:
    """Largest absolute difference between the two sides' results."""
    import numpy as np
    import pandas as pd

    a = pd.read_parquet(first).sort_values(STRATA).reset_index(drop=True)
    b = pd.read_parquet(second).sort_values(STRATA).reset_index(drop=True)
    if list(a[STRATA].values.tolist()) != list(b[STRATA].values.tolist()):
        sys.exit("the two sides disagree on the wells")
    features = [c for c in a.columns if c not in STRATA]
    return float(np.abs(a[features].to_numpy() - b[features].to_numpy()).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--plates", type=int, default=55, help="60 wells each")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--columns-per-pass", type=int, default=None, help="median columns per scan"
    )
    parser.add_argument("--warm-gb", type=float, default=8.0)
    parser.add_argument("--data", type=Path, default=Path("/tmp/cellstore-bench-aggregate"))
    parser.add_argument("--pycytominer-venv", type=Path, default=Path("/tmp/pycyto-venv"))
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--operation", choices=OPERATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--parquet", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.operation, args.parquet, args.out, args.columns_per_pass)
        return

    args.data.mkdir(parents=True, exist_ok=True)
    data = args.data / f"cells_{args.cells}x{args.features}_{args.plates}plates.parquet"
    if not data.exists():
        print(f"writing {data} ...", flush=True)
        make_cells(data, args.cells, args.features, args.plates, seed=0)
    pythons = {
        "cellstore": sys.executable,
        "pycytominer": str(ensure_pycytominer(args.pycytominer_venv)),
    }
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    results: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    for repeat in range(args.repeats):
        order = SIDES if repeat % 2 == 0 else SIDES[::-1]
        for operation in OPERATIONS:
            for side in order:
                warm_memory(args.warm_gb)
                out = args.data / f"result_{side}_{operation}.parquet"
                command = [
                    pythons[side],
                    __file__,
                    "--worker",
                    side,
                    "--operation",
                    operation,
                    "--parquet",
                    str(data),
                    "--out",
                    str(out),
                ]
                if args.columns_per_pass:
                    command += ["--columns-per-pass", str(args.columns_per_pass)]
                run = measure(command, env)
                results.setdefault((side, operation), []).append(run)
                print(
                    f"repeat {repeat + 1} {operation:6s} {side:11s} "
                    f"{run[0]:7.1f} s (process {run[1]:.1f} s, CPU {run[3]:.1f} s), "
                    f"peak RSS {run[2]:.2f} GiB",
                    flush=True,
                )
    print(
        f"\n{args.cells:,} cells x {args.features} features → "
        f"{args.plates * 60} wells, medians of {args.repeats} interleaved runs"
    )
    print(
        "| operation | cellstore s | pycytominer s | speed-up (pycytominer s / cellstore s) | "
        "CPU s cellstore / pycytominer | cellstore GiB | pycytominer GiB | "
        "memory ratio (cellstore / pycytominer) | max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for operation in OPERATIONS:
        ours = results[("cellstore", operation)]
        theirs = results[("pycytominer", operation)]
        t_ours = statistics.median(r[0] for r in ours)
        t_theirs = statistics.median(r[0] for r in theirs)
        m_ours = statistics.median(r[2] for r in ours)
        m_theirs = statistics.median(r[2] for r in theirs)
        c_ours = statistics.median(r[3] for r in ours)
        c_theirs = statistics.median(r[3] for r in theirs)
        diff = compare(
            args.data / f"result_cellstore_{operation}.parquet",
            args.data / f"result_pycytominer_{operation}.parquet",
        )
        print(
            f"| {operation} | {t_ours:.1f} | {t_theirs:.1f} | {t_theirs / t_ours:.1f} | "
            f"{c_ours:.1f} / {c_theirs:.1f} | "
            f"{m_ours:.2f} | {m_theirs:.2f} | {m_ours / m_theirs:.2f} | {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
