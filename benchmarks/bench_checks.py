"""Cost of table contracts on 1M-row cell tables, against the cost of producing those tables.

    .venv/bin/python benchmarks/bench_checks.py [--rows 1000000] [--repeats 3] [--dim 128]

For three cell-level tables (nuclei-like scalars, FLOAT[] embeddings, wide handcrafted
features) it writes the table into a DuckLake warehouse inside a transaction, runs its
contract there (as the runner does, before COMMIT), and reports per check the median time.
Stage-time comparators: (1) writing the table alone, the floor of any stage producing it;
(2) nucleus segmentation (cellstore.imaging.detect_nuclei) on painted 1280x1024 fields,
extrapolated to the same number of nuclei: a lower bound of the nuclei stage's own time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from cellstore.checks.contract import load_contract
from cellstore.checks.gx_checks import _batch_definition, run_gx_checks
from cellstore.checks.sql_checks import check_schema_drift, run_sql_check
from cellstore.engine.warehouse import Warehouse

N_IMAGES = 13_200  # fields of view in BBBC021

CONTRACTS = {
    "nuclei": """\
        table: nuclei
        grain: cell_id
        columns:
          - {name: image_id, type: VARCHAR, role: key, checks: [not_null]}
          - {name: cell_id, type: VARCHAR, role: key}
          - {name: plate, type: VARCHAR, role: meta, checks: [{match: {regex: "^Week[0-9]+_"}}]}
          - {name: well, type: VARCHAR, role: meta, checks: [{match: {regex: "^[A-P][0-9]{2}$"}}]}
          - {name: x, type: FLOAT, role: meta, checks: [finite, {range: {min: 0, max: 1280}}]}
          - {name: y, type: FLOAT, role: meta, checks: [finite, {range: {min: 0, max: 1024}}]}
          - {name: area, type: FLOAT, role: feature, checks: [{range: {min: 0, max: 100000}}]}
        checks:
          - row_count: {min: 1}
          - relationship: {columns: [image_id], to: images}
        """,
    "cell_embeddings": """\
        table: cell_embeddings
        grain: cell_id
        columns:
          - {name: cell_id, type: VARCHAR, role: key}
          - {name: embedding, type: "FLOAT[]", role: feature, checks: [{vector: {dim: DIM}}]}
        """,
    "cell_features": """\
        table: cell_features
        grain: cell_id
        columns:
          - {name: cell_id, type: VARCHAR, role: key}
        column_groups:
          - {pattern: "^f_", type: FLOAT, role: feature, min_columns: 1, checks: [vector]}
        """,
}


def make_table(name: str, n: int, dim: int, rng: np.random.Generator) -> pa.Table:
    """A clean table of `n` cells (every check passes, so every check scans everything)."""
    image = rng.integers(0, N_IMAGES, n)
    cell_id = pa.array([f"img{i}_{k}" for k, i in enumerate(image.tolist())])
    if name == "nuclei":
        return pa.table(
            {
                "image_id": pa.array([f"img{i}" for i in image.tolist()]),
                "cell_id": cell_id,
                "plate": pa.array([f"Week{1 + i % 10}_{i % 55}" for i in image.tolist()]),
                "well": pa.array([f"{'BCDEFG'[i % 6]}{2 + i % 10:02d}" for i in image.tolist()]),
                "x": rng.uniform(0, 1280, n).astype(np.float32),
                "y": rng.uniform(0, 1024, n).astype(np.float32),
                "area": rng.uniform(50, 900, n).astype(np.float32),
            }
        )
    if name == "cell_embeddings":
        flat = rng.standard_normal(n * dim, dtype=np.float32)
        vectors = pa.ListArray.from_arrays(np.arange(0, n * dim + 1, dim, dtype=np.int32), flat)
        return pa.table({"cell_id": cell_id, "embedding": vectors})
    features = rng.standard_normal((n, 111), dtype=np.float32)  # 111 = cellstore's feature count
    columns = {f"f_{j:03d}": features[:, j] for j in range(features.shape[1])}
    return pa.table({"cell_id": cell_id, **columns})


def time_checks(con, contract) -> dict[str, float]:
    """Seconds per check (GX checks timed together: they share one pass over the table)."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    _, target = check_schema_drift(con, contract)
    timings["schema"] = time.perf_counter() - start
    gx_specs = [s for s in contract.checks if s.engine == "gx"]
    for spec in contract.checks:
        if spec.engine == "sql":
            start = time.perf_counter()
            result = run_sql_check(con, target, spec)
            timings[f"sql {spec.name}"] = time.perf_counter() - start
            assert result.passed, result.message
    if gx_specs:
        start = time.perf_counter()
        results = run_gx_checks(con, target, gx_specs)
        timings[f"gx  {len(gx_specs)} expectations"] = time.perf_counter() - start
        assert all(r.passed for r in results), [r.message for r in results if not r.passed]
    return timings


def bench_table(name: str, n: int, dim: int, repeats: int, root: Path) -> float:
    """Median seconds of all checks of table `name` (and print the details)."""
    rng = np.random.default_rng(0)
    table = make_table(name, n, dim, rng)
    schema_dir = root / "schemas"
    schema_dir.mkdir(exist_ok=True)
    text = textwrap.dedent(CONTRACTS[name]).replace("DIM", str(dim))
    (schema_dir / f"{name}.yml").write_text(text)
    contract = load_contract(schema_dir / f"{name}.yml")
    con = Warehouse(root / f"wh_{name}").connect()
    con.execute(f"create table images as select 'img' || range as image_id from range({N_IMAGES})")
    writes, checks, per_check = [], [], []
    for _ in range(repeats):
        con.execute("begin")
        start = time.perf_counter()
        con.register("stage_output", table)
        con.execute(f"create or replace table {name} as select * from stage_output")
        con.unregister("stage_output")
        writes.append(time.perf_counter() - start)
        timings = time_checks(con, contract)
        checks.append(sum(timings.values()))
        per_check.append(timings)
        con.execute("commit")
    con.close()
    write_s, check_s = statistics.median(writes), statistics.median(checks)
    mb = table.nbytes / 1e6
    print(f"\n{name}: {n:,} rows, {table.num_columns} columns, {mb:,.0f} MB in Arrow")
    print(f"  write into DuckLake (stage floor): {write_s:6.2f} s  (runs: {_fmt(writes)})")
    print(f"  all checks:                        {check_s:6.2f} s  (runs: {_fmt(checks)})")
    for key in per_check[0]:
        print(f"    {key:<44} {statistics.median(t[key] for t in per_check):6.3f} s")
    print(f"  checks / write = {check_s / write_s:.2f}")
    return check_s


def _fmt(seconds: list[float]) -> str:
    return ", ".join(f"{s:.2f}" for s in seconds)


def bench_segmentation(n_fields: int = 4) -> float:
    """Seconds per nucleus of detect_nuclei on painted full-size fields (segmentation only)."""
    from cellstore.imaging.phantoms import paint_field
    from cellstore.imaging.segmentation import detect_nuclei

    fields = [paint_field(seed, height=1024, width=1280, n_cells=120) for seed in range(n_fields)]
    detect_nuclei(fields[0].channels["dapi"].astype(np.float32))  # warm-up
    found, start = 0, time.perf_counter()
    for field in fields:
        found += len(detect_nuclei(field.channels["dapi"].astype(np.float32)))
    per_nucleus = (time.perf_counter() - start) / found
    print(f"\nsegmentation: {found} nuclei in {n_fields} fields of 1280x1024, "
          f"{per_nucleus * 1e3:.2f} ms per nucleus")  # fmt: skip
    return per_nucleus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dim", type=int, default=128, help="embedding length")
    parser.add_argument("--tables", default="nuclei,cell_embeddings,cell_features")
    args = parser.parse_args()

    start = time.perf_counter()
    _batch_definition()  # GX import + context: paid once per build process
    print(f"Great Expectations import + context: {time.perf_counter() - start:.2f} s (once)")
    costs = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.tables.split(","):
            costs[name] = bench_table(name, args.rows, args.dim, args.repeats, Path(folder))
    per_nucleus = bench_segmentation()
    segmentation_s = per_nucleus * args.rows
    print(f"\nsegmenting {args.rows:,} nuclei alone: {segmentation_s:,.0f} s")
    for name, check_s in costs.items():
        print(f"  {name} checks / segmentation time = {check_s / segmentation_s:.2%}")


if __name__ == "__main__":
    main()
