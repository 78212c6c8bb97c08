"""Where does the seed-to-seed spread of MoA accuracy come from? A fast, approximate answer.

    .venv/bin/python benchmarks/seed_variance.py --fit WORKDIR --seeds 8-19 \
        [--variant "PLATE_NOISE=0" --variant "PLATE_NOISE=0 WELL_NOISE=0" ...] [--no-residuals]

A real answer costs ~4 min of rendering, segmenting and measuring per seed
(`bench_accuracy.py`), too slow to turn one generator constant at a time over a dozen seeds.
This script learns, once, how the pipeline's well features follow the phenotype model:
a ridge regression from the proxy's per-well descriptors (`cellstore.synth.proxy`: the
same cells the renderer draws, summarised in seconds) and their squares to the 111
handcrafted well features of warehouses `bench_accuracy.py` built (WORKDIR). Rendering and
segmentation noise the descriptors do not explain is added back by resampling the fit's
residual rows (`--no-residuals` leaves it out). For each seed and each variant, the
predicted well features go through the project's own normalisation and SQL evaluation
(`benchmarks/evaluation.py`), and the script prints NSC / NSCB mean ± std over the seeds.

A variant sets module constants of `cellstore.synth.phenotypes` for the whole run
(`NAME=VALUE`, floats only; the first row is always the generator as it stands), e.g.
`PLATE_NOISE=0` removes the plates' phenotype offsets. It answers "how much of the spread
does this noise source cause", not the exact accuracy: check a chosen change with
`bench_accuracy.py`. About 7 s per seed and variant on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.evaluation import Evaluator, normalize_settings  # noqa: E402
from cellstore.synth.params import SUMMARY_FILE  # noqa: E402

SHOWN = ("none", "standardize", "whitening", "tvn")


def parse_seeds(text: str) -> list[int]:
    """'8-11,20' → [8, 9, 10, 11, 20]."""
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part.strip()[1:]:
            low, high = part.split("-")
            seeds += range(int(low), int(high) + 1)
        elif part.strip():
            seeds.append(int(part))
    return seeds


def parse_variant(text: str) -> dict[str, float]:
    """'PLATE_NOISE=0 WELL_NOISE=0.02' → {name: value}, checked against the module."""
    from cellstore.synth import phenotypes

    settings = {}
    for item in text.split():
        name, _, value = item.partition("=")
        current = getattr(phenotypes, name, None)
        if not isinstance(current, float) or not value:
            sys.exit(f"--variant {text!r}: {name} is not a float constant of phenotypes.py")
        settings[name] = float(value)
    return settings


def fitted_warehouses(workdir: Path) -> list[tuple[int, Path]]:
    """(seed, warehouse) of every handcrafted build under a bench_accuracy WORKDIR."""
    found = []
    for warehouse in sorted((workdir / "warehouses").glob("*-handcrafted")):
        summary = workdir / "sources" / warehouse.name.removesuffix("-handcrafted") / SUMMARY_FILE
        if summary.exists():
            found.append((json.loads(summary.read_text())["params"]["seed"], warehouse))
    if not found:
        sys.exit(f"no handcrafted warehouse under {workdir}/warehouses: run bench_accuracy.py")
    return found


def design(descriptors: np.ndarray) -> np.ndarray:
    """Regression inputs: descriptors and their squares (areas go as radius squared)."""
    return np.hstack([descriptors, descriptors**2])


def well_descriptor_rows(seed: int, keys: list[tuple[str, str]]) -> np.ndarray:
    """The proxy's descriptors of the demo layout at `seed`, in the order of `keys`."""
    from cellstore.synth.demo import DEMO
    from cellstore.synth.proxy import well_descriptors

    found = well_descriptors(replace(DEMO, seed=seed))
    rows = {
        key: v
        for key, v in zip(zip(found.plate, found.well, strict=True), found.values, strict=True)
    }
    return np.array([rows[key] for key in keys])


def with_features(wells: pa.Table, values: np.ndarray) -> pa.Table:
    """`wells` with its features column replaced by the rows of `values`."""
    n, d = values.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
    column = pa.ListArray.from_arrays(offsets, pa.array(values.astype(np.float32).reshape(-1)))
    index = wells.schema.get_field_index("features")
    return wells.set_column(index, wells.schema.field("features"), column)


class FeatureModel:
    """Descriptors → well features, fitted on built warehouses."""

    def __init__(self, builds: list[tuple[int, Path]]) -> None:
        from sklearn.linear_model import Ridge
        from sklearn.preprocessing import StandardScaler

        from cellstore.engine.warehouse import Warehouse

        inputs, targets = [], []
        for seed, warehouse in builds:
            con = Warehouse(warehouse).connect(read_only=True)
            try:
                evaluator = Evaluator(con, normalize_settings(con))
                wells = evaluator.well_profiles(con.table("cell_features"), "cell_features")
            finally:
                con.close()
            keys = list(zip(wells["plate"].to_pylist(), wells["well"].to_pylist(), strict=True))
            inputs.append(design(well_descriptor_rows(seed, keys)))
            targets.append(np.array(wells["features"].to_pylist(), np.float64))
        # the last build's evaluator and wells are the template every prediction fills in
        self.evaluator, self.wells, self.keys = evaluator, wells, keys
        x, y = np.vstack(inputs), np.vstack(targets)
        self.x_scale, self.y_scale = StandardScaler().fit(x), StandardScaler().fit(y)
        self.ridge = Ridge(alpha=1.0).fit(self.x_scale.transform(x), self.y_scale.transform(y))
        self.residuals = y - self._predict(x)
        explained = 1 - self.residuals.var(axis=0) / np.maximum(y.var(axis=0), 1e-30)
        self.median_r2 = float(np.median(explained))

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return self.y_scale.inverse_transform(self.ridge.predict(self.x_scale.transform(x)))

    def accuracy(self, seed: int, residuals: bool) -> dict[str, tuple[float, float]]:
        """post-processing → (NSC, NSCB) of the predicted well features at `seed`."""
        predicted = self._predict(design(well_descriptor_rows(seed, self.keys)))
        if residuals:
            rng = np.random.default_rng([seed, 1])
            predicted += self.residuals[rng.integers(0, len(self.residuals), len(predicted))]
        rows = self.evaluator.accuracy(with_features(self.wells, predicted))
        return {r["postprocessing"]: (float(r["nsc"]), float(r["nscb"])) for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit", type=Path, required=True, help="a bench_accuracy.py WORKDIR")
    parser.add_argument("--seeds", default="8-19", help="e.g. 8-19 or 3,5,7")
    parser.add_argument("--variant", action="append", default=[], help="NAME=VALUE ...")
    parser.add_argument("--no-residuals", action="store_true")
    args = parser.parse_args()
    from cellstore.synth import phenotypes

    seeds = parse_seeds(args.seeds)
    variants = [("as is", {})] + [(text, parse_variant(text)) for text in args.variant]
    started = time.perf_counter()
    builds = fitted_warehouses(args.fit)
    model = FeatureModel(builds)
    print(
        f"fitted on seeds {[s for s, _ in builds]}: median R² {model.median_r2:.3f} "
        f"over the {model.residuals.shape[1]} features ({time.perf_counter() - started:.0f} s)"
    )
    print(f"{len(seeds)} seeds {args.seeds}, residuals {'off' if args.no_residuals else 'on'}")
    header = " ".join(f"{p + ' NSC':>17s} {p + ' NSCB':>17s}" for p in SHOWN)
    print(f"{'variant':34s} {header}")
    for label, settings in variants:
        saved = {name: getattr(phenotypes, name) for name in settings}
        for name, value in settings.items():
            setattr(phenotypes, name, value)
        try:
            scores = [model.accuracy(seed, not args.no_residuals) for seed in seeds]
        finally:
            for name, value in saved.items():
                setattr(phenotypes, name, value)
        cells = []
        for post in SHOWN:
            for i in (0, 1):
                values = [score[post][i] for score in scores]
                cells.append(f"{statistics.fmean(values):.3f}±{statistics.pstdev(values):.3f}")
        print(f"{label[:34]:34s} " + " ".join(f"{c:>17s}" for c in cells), flush=True)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
