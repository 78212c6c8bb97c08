"""SimCLR for a time budget on a built warehouse's crops: MoA accuracy as training goes on.

    python benchmarks/bench_simclr.py --warehouse DIR [--minutes 60] [--points 4]
        [--max-cells 30000] [--preset demo] [--seed 0] [--device auto] [--out DIR]
        [--csv FILE] [--verify]

Trains SimCLR (`cellstore.ssl.train.train`, the `simclr` stage's loop) on the committed
Parquet files of the warehouse's `crops` table, into OUT/checkpoints. Epoch 0 runs alone
first and is timed; the total number of epochs E is then the most whose training fits in
--minutes (E × epoch 0's seconds), and train() is called again with epochs=E: it resumes
after epoch 0 and its cosine schedule runs to 0 at epoch E (epoch 0 lies in the constant-lr
warm-up of both presets, so it is the same whichever total follows). At --points
evaluation points spread evenly over the E epochs (after ceil(E·i/points) epochs), the
checkpoint is kept as OUT/epoch_NNNN.pt (train's 0-based epoch number) and every crop is
embedded with it (h, as `cellstore.ssl.tables.embed_stage`); `initial.pt`, the untrained
control, is embedded once.

Each set of embeddings becomes well profiles through the project's own code
(`build_well_profiles` with the `embeddings` declaration of schemas/, treatments from the
warehouse's `images` and `moa`), then `stages/well_profiles_normalized.py` (with the
settings of the warehouse's last build of that stage) and sql/treatment_profiles.sql,
sql/moa_neighbors.sql, sql/moa_accuracy.sql in an in-memory DuckDB: the numbers are those
`cellstore sql "select * from moa_accuracy"` would show for a warehouse built with that
encoder. The `handcrafted` rows are the warehouse's own well profiles put through the same
evaluation, and are checked against its moa_accuracy. Feature sources: `handcrafted`,
`simclr_untrained`, `simclr@epochN` (after N completed epochs); the last is `simclr`.
--verify also re-embeds the crops with the warehouse's own simclr artifact and checks that
the script reproduces the warehouse's moa_accuracy rows of simclr and simclr_untrained.

Prints a table per evaluation point (epochs, training minutes so far, loss, accuracy), a
final table (feature source × post-processing: NSC, NSCB, drop, mAP; NULL shown as –), the
best NSCB over post-processings of simclr (final), simclr_untrained and handcrafted, and
whether simclr reaches handcrafted (the bar: best NSCB ≥ handcrafted's best NSCB). Every row
goes to a CSV (default OUT/accuracy.csv), rewritten after every evaluation, so a killed run
keeps what it measured. Progress lines with timestamps go to stderr.
The warehouse is opened read-only and never changed.

--minutes counts training only (the sum of the epochs' seconds): 60 is what the 2-core
development machine allows for one run. Each evaluation point adds one embedding pass over
every crop and the SQL evaluation, and the untrained control one more pass after epoch 0
(~400 crops/s for the demo's small CNN on the loaded 2-core machine: ~4 min a pass for the
demo's ~97k crops); after epoch 0 the script prints the plan and when the run should end.
Tiny smoke test on a 2-plate warehouse (about a minute or two; its accuracies mean nothing,
NSC may be NULL where a MoA has one compound):

    python benchmarks/bench_simclr.py --warehouse /tmp/wh2 --minutes 1 --points 2 \\
        --max-cells 1024
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.evaluation import (  # noqa: E402
    ACCURACY_COLUMNS,
    METRICS,
    Evaluator,
    normalize_settings,
    warehouse_accuracy,
)
from cellstore.engine.warehouse import LAKE, Warehouse  # noqa: E402
from cellstore.ssl.data import CropFile  # noqa: E402
from cellstore.ssl.device import resolve_device  # noqa: E402
from cellstore.ssl.embed import embed  # noqa: E402
from cellstore.ssl.tables import (  # noqa: E402
    FINAL,
    INITIAL,
    TRAINED,
    UNTRAINED,
    crop_chunks,
    vectors,
)
from cellstore.ssl.train import PRESETS, latest_checkpoint, load_model, train  # noqa: E402

HANDCRAFTED = "handcrafted"
CROP_COLUMNS = "cell_id, image_id, plate, well, crop, shape, dtype"
EMBED_BATCH, READ_ROWS = 512, 8192  # the embeddings stage's defaults
STARTED = time.perf_counter()


def say(message: str) -> None:
    """A progress line on stderr: wall clock and seconds since the start."""
    stamp = time.strftime("%H:%M:%S")
    print(
        f"[{stamp} +{time.perf_counter() - STARTED:6.0f}s] {message}", file=sys.stderr, flush=True
    )


# --- the warehouse (read-only) ------------------------------------------------------------


def crop_files(con: duckdb.DuckDBPyConnection, out: Path) -> list[CropFile]:
    """The crops table's committed Parquet files with their row counts.

    When they do not hold exactly the table's rows (inlined rows, delete files), the build
    would compact the table first (cellstore.engine.files.table_files); a read-only reader
    cannot, so the rows are exported to OUT/crops.parquet instead.
    """
    n_rows = con.execute("select count(*) from crops").fetchone()[0]
    listing = con.execute(
        f"select data_file, delete_file from ducklake_list_files('{LAKE}', 'crops')"
    ).fetchall()
    paths = [path for path, _ in listing]
    counts: dict[str, int] = {}
    if paths:
        listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
        counts = dict(
            con.execute(
                f"select file_name, num_rows from parquet_file_metadata([{listed}])"
            ).fetchall()
        )
    if paths and not any(d for _, d in listing) and sum(counts.values()) == n_rows:
        return [CropFile(p, int(counts[p])) for p in paths]
    export = out / "crops.parquet"
    say(f"crops: the table's files do not hold exactly its {n_rows} rows; exporting to {export}")
    con.execute(f"copy (select crop, shape, dtype from crops) to '{export}' (format parquet)")
    return [CropFile(str(export), n_rows)]


def warehouse_artifact(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The simclr artifact folder the warehouse's embeddings were made with, if known."""
    runs = [r[0] for r in con.execute("select distinct simclr_run from embeddings").fetchall()]
    dirs = con.execute(
        "select artifact_dir from cellstore_meta.runs where stage = 'simclr' "
        "and status = 'built' and artifact_dir is not null order by started_at desc"
    ).fetchall()
    for (folder,) in dirs:
        if len(runs) == 1 and Path(folder).name == runs[0] and Path(folder).is_dir():
            return Path(folder)
    return None


# --- embeddings → well profiles → accuracy ------------------------------------------------


def embed_crops(
    con: duckdb.DuckDBPyConnection, checkpoints: dict[str, Path], device: str
) -> pa.Table:
    """Every crop through each checkpoint's encoder, as `embed_stage` does (same batches,
    `embed`, no augmentation) → an embeddings-shaped table (plate, well, model, embedding)
    with `model` = the dict's key, crops in the table's scan order."""
    models = {name: load_model(path) for name, path in checkpoints.items()}
    plates: list[pa.Array] = []
    wells: list[pa.Array] = []
    parts: dict[str, list[np.ndarray]] = {name: [] for name in models}
    reader = con.sql(f"select {CROP_COLUMNS} from crops").to_arrow_reader(READ_ROWS)
    for batch, _, chunks in crop_chunks(reader, EMBED_BATCH):
        for name, (model, config) in models.items():
            size, mean, std = int(config["size"]), config["mean"], config["std"]
            parts[name].append(embed(model, chunks, size, mean, std, device))
        plates.append(batch.column("plate").cast(pa.string()))
        wells.append(batch.column("well").cast(pa.string()))
    if not plates:
        raise SystemExit("the crops table is empty: nothing to embed")
    plate, well = pa.concat_arrays(plates), pa.concat_arrays(wells)
    tables = [
        pa.table(
            {
                "plate": plate,
                "well": well,
                "model": pa.array([name] * len(plate), pa.string()),
                "embedding": vectors(np.concatenate(parts[name])),
            }
        )
        for name in models
    ]
    return pa.concat_tables(tables)


def renamed(wells: pa.Table, names: dict[str, str]) -> pa.Table:
    sources = [names.get(s, s) for s in wells.column("feature_source").to_pylist()]
    return wells.set_column(0, "feature_source", pa.array(sources, pa.string()))


def compare(mine: list[dict], theirs: list[dict], what: str) -> bool:
    """Whether two sets of moa_accuracy rows agree exactly; says so (or where they differ)."""
    key = lambda r: (r["feature_source"], r["postprocessing"])  # noqa: E731
    a, b = {key(r): r for r in mine}, {key(r): r for r in theirs}
    if set(a) != set(b):
        say(f"check {what}: rows differ: {sorted(set(a) ^ set(b))}")
        return False
    worst = 0.0
    for k in a:
        for m in (*METRICS, "map_nscb", "n_nsc", "n_nscb"):
            x, y = a[k][m], b[k][m]
            if (x is None) != (y is None):
                worst = math.inf
            elif x is not None:
                worst = max(worst, abs(float(x) - float(y)))
    verdict = "identical" if worst == 0 else f"differ by up to {worst:.3g}"
    say(f"check {what}: the script's accuracy and the warehouse's moa_accuracy are {verdict}")
    return worst == 0


# --- output ---------------------------------------------------------------------------------


def cell(value: Any, width: int = 7) -> str:
    return f"{'–':>{width}s}" if value is None else f"{float(value):{width}.3f}"


def print_rows(rows: list[dict], title: str) -> None:
    print(f"\n{title}")
    print(f"{'feature source':22s} {'post':12s} " + " ".join(f"{m:>7s}" for m in METRICS))
    for row in rows:
        cells = " ".join(cell(row[m]) for m in METRICS)
        print(f"{row['feature_source']:22s} {row['postprocessing']:12s} {cells}")
    sys.stdout.flush()


def write_csv(path: Path, rows: list[dict]) -> None:
    """Every accuracy row so far (rewritten after each evaluation: a killed run keeps them)."""
    columns = ["epochs", "train_minutes", "loss", *ACCURACY_COLUMNS]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row[c] is None else row[c] for c in columns])


def best_nscb(rows: list[dict], source: str) -> tuple[float | None, str]:
    """The best NSCB of a source over post-processings, and those reaching it ('–': none)."""
    scored = [r for r in rows if r["feature_source"] == source and r["nscb"] is not None]
    if not scored:
        return None, "–"
    best = max(r["nscb"] for r in scored)
    return best, "/".join(r["postprocessing"] for r in scored if r["nscb"] == best)


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, required=True, help="a built warehouse")
    parser.add_argument(
        "--minutes", type=float, default=60.0, help="training budget (60 on the 2-core machine)"
    )
    parser.add_argument("--points", type=int, default=4, help="evaluation points")
    parser.add_argument(
        "--max-cells", type=int, default=30_000, help="crops per epoch (0: every crop)"
    )
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    parser.add_argument("--size", type=int, default=None, help="input px (default: preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a new temp)")
    parser.add_argument("--csv", type=Path, default=None, help="default: OUT/accuracy.csv")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="also re-embed with the warehouse's own simclr artifact and check its accuracy",
    )
    args = parser.parse_args()
    if args.minutes <= 0 or args.points < 1 or args.max_cells < 0:
        sys.exit("--minutes must be > 0, --points >= 1, --max-cells >= 0")
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_simclr.", dir="/tmp"))
    folder = out / "checkpoints"
    if folder.is_dir() and latest_checkpoint(folder) is not None:
        sys.exit(f"{folder} already holds checkpoints: give a new --out")
    folder.mkdir(parents=True, exist_ok=True)
    device = str(resolve_device(args.device))
    say(f"warehouse {args.warehouse}, work folder {out}, device {device}")

    con = Warehouse(args.warehouse).connect(read_only=True)
    files = crop_files(con, out)
    n_crops = sum(f.rows or 0 for f in files)
    settings = normalize_settings(con)
    evaluator = Evaluator(con, settings)
    handcrafted = con.sql(
        f"select * from well_profiles where feature_source = '{HANDCRAFTED}' order by plate, well"
    ).to_arrow_table()
    if handcrafted.num_rows == 0:
        sys.exit(f"{args.warehouse}: well_profiles has no {HANDCRAFTED} rows")
    say(f"{n_crops} crops in {len(files)} file(s); well_profiles_normalized settings {settings}")

    results: list[dict] = []  # every accuracy row, with the point it belongs to
    points_table: list[dict] = []
    csv_path = args.csv or out / "accuracy.csv"

    def record(rows: list[dict], point: dict) -> None:
        results.extend({**point, **row} for row in rows)
        write_csv(csv_path, results)

    # handcrafted: the warehouse's well profiles through the same evaluation
    t0 = time.perf_counter()
    rows = evaluator.accuracy(handcrafted)
    say(f"evaluated {HANDCRAFTED} in {time.perf_counter() - t0:.1f} s")
    compare(rows, warehouse_accuracy(con, (HANDCRAFTED,)), HANDCRAFTED)
    record(rows, {"epochs": None, "train_minutes": None, "loss": None})

    if args.verify:
        artifact = warehouse_artifact(con)
        if artifact is None:
            say("verify: cannot find the warehouse's simclr artifact folder; skipped")
        else:
            say(f"verify: embedding every crop with {artifact}")
            cells = embed_crops(
                con, {TRAINED: artifact / FINAL, UNTRAINED: artifact / INITIAL}, device
            )
            mine = evaluator.accuracy(evaluator.well_profiles(cells, "embeddings"))
            compare(mine, warehouse_accuracy(con, (TRAINED, UNTRAINED)), "verify (simclr)")
            del cells

    # epoch 0 alone, timed
    overrides = dict(preset=args.preset, max_cells=args.max_cells or None, seed=args.seed)
    if args.size:
        overrides["size"] = args.size
    say(f"training epoch 0 ({args.preset}, max_cells {args.max_cells or 'all'})")
    t0 = time.perf_counter()
    log = train(files, folder, epochs=1, device=args.device, **overrides)
    first_call = time.perf_counter() - t0
    epoch_s = log[0]["seconds"]
    say(
        f"epoch 0: {epoch_s:.1f} s ({first_call:.1f} s with set-up), loss {log[0]['loss']:.4f}, "
        f"{log[0]['cells_per_s']:.0f} cells/s, {log[0]['steps']} steps"
    )

    # the untrained control, embedded once
    t0 = time.perf_counter()
    cells = embed_crops(con, {UNTRAINED: folder / INITIAL}, device)
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = evaluator.accuracy(evaluator.well_profiles(cells, "embeddings"))
    eval_s = time.perf_counter() - t0
    del cells
    record(rows, {"epochs": 0, "train_minutes": 0.0, "loss": None})
    say(f"{UNTRAINED}: embedded in {embed_s:.1f} s, evaluated in {eval_s:.1f} s")

    # the plan: E epochs in the budget, evaluation points spread over them
    budget_s = args.minutes * 60
    total = max(1, int(budget_s // max(epoch_s, 1e-9)))
    points = sorted({max(1, math.ceil(total * i / args.points)) for i in range(1, args.points + 1)})
    evaluations_s = len(points) * (embed_s + eval_s)
    expected_s = time.perf_counter() - STARTED + (total - 1) * epoch_s + evaluations_s
    say(
        f"plan: {total} epoch(s) ≈ {total * epoch_s / 60:.1f} min of training (budget "
        f"{args.minutes:g} min), evaluation after epoch(s) {points} ≈ "
        f"{evaluations_s / 60:.1f} min more; the run should end after ≈ {expected_s / 60:.1f} min"
    )

    def evaluate_point(row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        done = int(row["epoch"]) + 1
        if done not in points:
            return
        kept = out / f"epoch_{row['epoch']:04d}.pt"
        shutil.copyfile(folder / FINAL, kept)
        minutes = sum(r["seconds"] for r in history) / 60
        name = f"{TRAINED}@epoch{done}"
        t0 = time.perf_counter()
        cells = embed_crops(con, {name: kept}, device)
        wells = evaluator.well_profiles(cells, "embeddings")
        del cells
        rows = evaluator.accuracy(wells)
        point = {"epochs": done, "train_minutes": minutes, "loss": row["loss"]}
        record(rows, point)
        points_table.append({**point, "rows": rows})
        say(f"evaluated {name} in {time.perf_counter() - t0:.1f} s")
        print_rows(
            rows,
            f"after {done}/{total} epoch(s), {minutes:.1f} min of training, loss {row['loss']:.4f}",
        )

    history: list[dict[str, Any]] = list(log)
    evaluate_point(log[0], history)

    def on_epoch(row: dict[str, Any]) -> None:
        history.append(row)
        say(
            f"epoch {row['epoch']}/{total - 1}: {row['seconds']:.1f} s, loss {row['loss']:.4f}, "
            f"lr {row['lr']:.2e}, {row['cells_per_s']:.0f} cells/s"
        )
        evaluate_point(row, history)

    if total > 1:
        train(files, folder, epochs=total, device=args.device, on_epoch=on_epoch, **overrides)
    con.close()

    # summary
    final = f"{TRAINED}@epoch{points[-1]}"
    print("\nevaluation points")
    print(f"{'epochs':>6s} {'train min':>9s} {'loss':>8s} {'best NSCB':>9s} {'post':12s}")
    for point in points_table:
        value, post = best_nscb(point["rows"], f"{TRAINED}@epoch{point['epochs']}")
        print(
            f"{point['epochs']:6d} {point['train_minutes']:9.1f} {point['loss']:8.4f} "
            f"{cell(value, 9)} {post}"
        )
    order = [HANDCRAFTED, UNTRAINED] + [f"{TRAINED}@epoch{p}" for p in points]
    ranked = sorted(results, key=lambda r: (order.index(r["feature_source"]), r["postprocessing"]))
    print_rows(ranked, f"MoA accuracy ({n_crops} crops, {total} epochs, {args.preset})")
    best = {s: best_nscb(results, s) for s in (final, UNTRAINED, HANDCRAFTED)}
    parts = [f"{s} {cell(v, 0)} ({p})" for s, (v, p) in best.items()]
    print("\nbest NSCB over post-processings: " + ", ".join(parts))
    mine, bar = best[final][0], best[HANDCRAFTED][0]
    verdict = "n/a (NULL)" if mine is None or bar is None else ("yes" if mine >= bar else "no")
    print(f"simclr best NSCB ≥ handcrafted best NSCB: {verdict}")
    print(f"total {(time.perf_counter() - STARTED) / 60:.1f} min")

    write_csv(csv_path, ranked)
    print(f"wrote {csv_path}")


if __name__ == "__main__":
    main()
