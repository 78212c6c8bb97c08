"""No-op `cellstore build` wall time: a built project with nothing changed (bar: < 1.5 s).

Usage: python benchmarks/bench_noop_build.py [--project DIR] [--warehouse DIR] [--runs N]
Without --project it measures a generated toy project (3 Python + 6 SQL stages). With
--project it measures that project (build it once first; the script does the first build).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path


def make_toy(root: Path) -> None:
    (root / "sql").mkdir(parents=True)
    (root / "stages").mkdir()
    for i in range(3):
        (root / "stages" / f"source_{i}.py").write_text(
            textwrap.dedent(f"""
            import pyarrow as pa
            from cellstore.stage import stage

            @stage
            def source_{i}(*, n: int = 1000):
                return pa.table({{"k": list(range(n)), "v": [float(x) for x in range(n)]}})
            """)
        )
        (root / "sql" / f"agg_{i}.sql").write_text(
            f"select k % 10 as g, avg(v) as v from source_{i} group by 1\n"
        )
        (root / "sql" / f"joined_{i}.sql").write_text(
            f"select a.g, a.v + b.v as v from agg_{i} a join agg_{(i + 1) % 3} b using (g)\n"
        )


def timed_build(project: Path, warehouse: Path) -> tuple[float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cellstore", "build", "--warehouse", str(warehouse)],
        cwd=project,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"build failed:\n{proc.stdout}\n{proc.stderr}")
    if "built" in proc.stdout.replace("up to date", ""):
        sys.exit(f"the build was not a no-op:\n{proc.stdout}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path)
    parser.add_argument("--warehouse", type=Path)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = args.project.resolve() if args.project else Path(tmp) / "toy"
        if args.project is None:
            make_toy(project)
        warehouse = (args.warehouse or (project / "warehouse")).resolve()
        first = subprocess.run(
            [sys.executable, "-m", "cellstore", "build", "--warehouse", str(warehouse)],
            cwd=project,
            capture_output=True,
            text=True,
        )
        if first.returncode != 0:
            sys.exit(f"first build failed:\n{first.stdout}\n{first.stderr}")
        walls, peak = [], 0
        for _ in range(args.runs):
            wall, peak = timed_build(project, warehouse)
            walls.append(wall)
        n_stages = len(list(project.glob("sql/*.sql"))) + len(list(project.glob("stages/*.py")))
    print(f"{'project':<40} {'stages':>6} {'runs':>5} {'median s':>9} {'max s':>7} {'peak MB':>8}")
    label = str(args.project or "generated toy project")
    print(
        f"{label:<40} {n_stages:>6} {args.runs:>5} {statistics.median(walls):>9.2f} "
        f"{max(walls):>7.2f} {peak / 1024:>8.0f}"
    )
    print("bar: median < 1.5 s on the 2-core machine")


if __name__ == "__main__":
    main()
