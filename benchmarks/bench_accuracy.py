"""MoA accuracy over generator seeds: NSC / NSCB / drop / mAP as mean ± std, through the real
pipeline (images → nuclei → features → profiles → SQL evaluation).

    .venv/bin/python benchmarks/bench_accuracy.py --seeds 0,1,2 [--layout demo]
        [--sources handcrafted|all] [--workdir DIR] [--workers N] [--batch-strength F]
        [--heterogeneity F] [--csv FILE]

For each seed: generates one source (the demo's parameters, `cellstore.synth.DEMO`, with
that seed and the given knobs) into WORKDIR/sources/<fingerprint>, reused by later runs
while the generator and parameters are unchanged; builds it with `cellstore build` of this
repository's project into its own warehouse WORKDIR/warehouses/<fingerprint>-<sources> (a
rerun builds nothing new). `--sources handcrafted` (default) builds up to `cell_features`
and scores them with the project's own well-profile, normalisation and SQL evaluation code
(`benchmarks/evaluation.py`: the same rows `moa_accuracy` holds, without training SimCLR);
`--sources all` builds the whole project and reads its `moa_accuracy` (SimCLR included).
Prints one row per feature source × post-processing with mean ± std (population, ddof 0)
over the seeds, nucleus detection against the generator's ground truth per seed, and
writes every per-seed row and the summary to a CSV (default WORKDIR/accuracy.csv).

Cost on the 2-core development machine, `--sources handcrafted`: per seed 52-112 s to
generate and 150-274 s to build (about 4-5 min), so 3 seeds take 11-15 min (measured:
684-879 s over ten runs). `--sources all` adds the SimCLR stages, about 6 min a seed. A
rerun with every source and warehouse in place takes seconds. --layout small (two plates,
a smoke test of the script) takes about a minute per seed; its accuracies mean nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.evaluation import METRICS  # noqa: E402
from cellstore.synth.params import SUMMARY_FILE, SynthParams  # noqa: E402

LAYOUTS = {"small": ("Week5_29301", "Week10_40111")}
# --sources → what `cellstore build --select` builds (None: everything)
SELECTIONS = {"handcrafted": "+cell_features,moa", "all": None}


def layout_params(layout: str, seed: int, batch_strength: float, heterogeneity: float):
    from cellstore.synth.demo import DEMO

    params = replace(DEMO, seed=seed, batch_strength=batch_strength, heterogeneity=heterogeneity)
    if layout == "demo":
        return params
    return replace(params, plates=LAYOUTS[layout])


def ensure_source(folder: Path, params: SynthParams, workers: int) -> tuple[Path, float]:
    """The generated source for `params` under `folder`, generating it unless present."""
    target = folder / params.fingerprint()
    summary = target / SUMMARY_FILE
    if summary.exists() and json.loads(summary.read_text()).get("fingerprint") == (
        params.fingerprint()
    ):
        return target, 0.0
    from cellstore.synth import generate

    folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="tmp.", dir=folder))
    started = time.perf_counter()
    try:
        generate(
            scratch,
            plates=params.plates,
            sites=params.sites,
            scale=params.scale,
            seed=params.seed,
            wells=params.wells,
            density=params.density,
            batch_strength=params.batch_strength,
            heterogeneity=params.heterogeneity,
            workers=workers,
        )
        if target.exists():
            shutil.rmtree(target)
        scratch.rename(target)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)
    return target, time.perf_counter() - started


def build(source: Path, warehouse: Path, select: str | None) -> float:
    """`cellstore build` of this repository's project on `source` into `warehouse`."""
    started = time.perf_counter()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    command = [sys.executable, "-m", "cellstore", "build", "--project", str(REPO)]
    command += ["--warehouse", str(warehouse), "--source", str(source)]
    if select:
        command += ["--select", select]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"build of {source} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def accuracy_rows(warehouse: Path, sources: str) -> list[dict]:
    """moa_accuracy of the warehouse (`all`), or of its cell_features through the project's
    evaluation code (`handcrafted`: the warehouse was built up to cell_features only)."""
    from benchmarks.evaluation import Evaluator, normalize_settings
    from cellstore.engine.warehouse import Warehouse

    con = Warehouse(warehouse).connect(read_only=True)
    try:
        if sources == "handcrafted":
            evaluator = Evaluator(con, normalize_settings(con))
            wells = evaluator.well_profiles(con.table("cell_features"), "cell_features")
            rows = evaluator.accuracy(wells)
        else:
            cursor = con.execute(
                "select * from moa_accuracy order by feature_source, postprocessing"
            )
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        return [{k: row[k] for k in ("feature_source", "postprocessing", *METRICS)} for row in rows]
    finally:
        con.close()


def detection(warehouse: Path, source: Path) -> tuple[float, float]:
    """(recall, precision) of the `nuclei` table against the generator's ground truth (5 px,
    as tests/test_imaging_build.py)."""
    import numpy as np
    import pyarrow.parquet as pq

    from cellstore.engine.warehouse import Warehouse
    from cellstore.imaging.evaluation import DetectionScore, match_centres

    con = Warehouse(warehouse).connect(read_only=True)
    try:
        found = con.execute("select image_id, x, y from nuclei").fetchall()
    finally:
        con.close()
    by_image: dict[str, list] = {}
    for image_id, x, y in found:
        by_image.setdefault(image_id, []).append((x, y))
    truth = pq.read_table(source / "ground_truth" / "nuclei.parquet").to_pandas()
    score = DetectionScore(0, 0, 0)
    for image_id, rows in truth.groupby("image_id"):
        detected = np.array(by_image.get(image_id, []), np.float64).reshape(-1, 2)
        score = score + match_centres(detected, rows[["x", "y"]].to_numpy(), radius=5)
    return score.recall, score.precision


def summarise(per_seed: list[dict]) -> list[dict]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in per_seed:
        groups.setdefault((row["feature_source"], row["postprocessing"]), []).append(row)
    summary = []
    for (source, post), rows in sorted(groups.items()):
        entry = {"feature_source": source, "postprocessing": post, "n_seeds": len(rows)}
        for metric in METRICS:
            values = [float(r[metric]) for r in rows]
            entry[f"{metric}_mean"] = statistics.fmean(values)
            entry[f"{metric}_std"] = statistics.pstdev(values)
        summary.append(entry)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated generator seeds")
    parser.add_argument("--layout", default="demo", choices=["demo", *LAYOUTS])
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench_accuracy"
    )
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    parser.add_argument("--batch-strength", type=float, default=1.0)
    parser.add_argument("--heterogeneity", type=float, default=1.0)
    parser.add_argument(
        "--sources",
        default="handcrafted",
        choices=list(SELECTIONS),
        help="handcrafted: build up to cell_features and score them (no SimCLR, ~4 min a "
        "seed); all: the whole project with its SimCLR stages (~10 min a seed)",
    )
    parser.add_argument("--csv", type=Path, default=None, help="default: WORKDIR/accuracy.csv")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not seeds:
        sys.exit("--seeds: give at least one seed")

    per_seed: list[dict] = []
    started = time.perf_counter()
    for seed in seeds:
        params = layout_params(args.layout, seed, args.batch_strength, args.heterogeneity)
        source, generated = ensure_source(args.workdir / "sources", params, args.workers)
        warehouse = args.workdir / "warehouses" / f"{params.fingerprint()}-{args.sources}"
        built = build(source, warehouse, SELECTIONS[args.sources])
        rows = accuracy_rows(warehouse, args.sources)
        nuclei = json.loads((source / SUMMARY_FILE).read_text())["n_nuclei"]
        recall, precision = detection(warehouse, source)
        print(
            f"seed {seed}: generate {generated:.0f} s, build {built:.0f} s, {nuclei} nuclei, "
            f"detection recall {recall:.4f} precision {precision:.4f} ({source.name})",
            flush=True,
        )
        per_seed += [{"seed": seed, **row} for row in rows]
    summary = summarise(per_seed)

    print(
        f"\n{len(seeds)} seed(s) {seeds}, layout {args.layout}, "
        f"batch strength {args.batch_strength}, heterogeneity {args.heterogeneity}"
    )
    print(f"{'feature source':24s} {'post':12s} " + " ".join(f"{m:>13s}" for m in METRICS))
    for entry in summary:
        cells = " ".join(f"{entry[f'{m}_mean']:6.3f}±{entry[f'{m}_std']:.3f}" for m in METRICS)
        print(f"{entry['feature_source']:24s} {entry['postprocessing']:12s} {cells}")
    print(f"total {time.perf_counter() - started:.0f} s")

    out = args.csv or args.workdir / "accuracy.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["seed", "feature_source", "postprocessing", *METRICS])
        for row in per_seed:
            writer.writerow(
                [row["seed"], row["feature_source"], row["postprocessing"]]
                + [row[m] for m in METRICS]
            )
        for entry in summary:
            for stat in ("mean", "std"):
                writer.writerow(
                    [stat, entry["feature_source"], entry["postprocessing"]]
                    + [entry[f"{m}_{stat}"] for m in METRICS]
                )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
