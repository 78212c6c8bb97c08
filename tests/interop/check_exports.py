"""Run inside .venv-interop: copairs mAP and pycytominer on cellstore's exports (JSON out).

usage: python check_exports.py TREATMENT_FILE... --wells WELL_FILE
Imports nothing of cellstore: it sees only the exported files, as an analyst would.
"""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pandas as pd


def copairs_map(path: str) -> dict[str, float]:
    """mAP per post-processing, positives = same MoA and another compound (cellstore's rule)."""
    from copairs.map import average_precision

    frame = pd.read_parquet(path)
    frame = frame[frame["Metadata_MoA"].notna()]
    features = [c for c in frame.columns if not c.startswith("Metadata_")]
    result = {}
    for variant, group in frame.groupby("Metadata_Postprocessing"):
        values = group[features].to_numpy(dtype=np.float64)
        keep = np.linalg.norm(values, axis=1) > 0  # cellstore: zero-norm profiles never rank
        meta = group.loc[keep, [c for c in group.columns if c.startswith("Metadata_")]]
        ap = average_precision(
            meta.reset_index(drop=True),
            values[keep],
            pos_sameby=["Metadata_MoA"],
            pos_diffby=["Metadata_Compound"],
            neg_sameby=[],
            neg_diffby=["Metadata_MoA"],
            distance="cosine",
            progress_bar=False,
        )
        scored = ap[ap["n_pos_pairs"] > 0]["average_precision"]
        result[variant] = {
            "map": float(scored.mean()) if len(scored) else None,
            "float32_ties": float32_ties(meta, values[keep]),
        }
    return result


def float32_ties(meta: pd.DataFrame, values: np.ndarray) -> int:
    """Positive/negative candidates of one query whose cosine is equal once made float32.

    copairs keeps similarities as float32 and breaks ties by row order, so where such ties
    exist its ranking (and AP) can differ from an exact one; elsewhere it must not.
    """
    unit = values / np.linalg.norm(values, axis=1, keepdims=True)
    similarity = (unit @ unit.T).astype(np.float32)
    moa = meta["Metadata_MoA"].to_numpy()
    compound = meta["Metadata_Compound"].to_numpy()
    ties = 0
    for i in range(len(unit)):
        candidates = compound != compound[i]
        positive = moa[candidates] == moa[i]
        sims = similarity[i, candidates]
        shared = np.intersect1d(sims[positive], sims[~positive])
        ties += len(shared)
    return ties


def pycytominer_steps(path: str) -> dict:
    """normalize then feature_select on the well-level export, everything left at defaults."""
    from pycytominer import feature_select, normalize

    raw = pd.read_parquet(path)
    normalized = normalize(profiles=path)  # pycytominer reads the file itself
    selected = feature_select(profiles=normalized)
    features = [c for c in normalized.columns if not c.startswith("Metadata_")]
    return {
        "rows": len(raw),
        "raw_columns": list(raw.columns),
        "normalized_columns": list(normalized.columns),
        "selected_columns": list(selected.columns),
        "normalized_rows": len(normalized),
        "selected_rows": len(selected),
        "max_abs_mean": float(normalized[features].mean().abs().max()),
        "std_range": [
            float(normalized[features].std(ddof=0).min()),
            float(normalized[features].std(ddof=0).max()),
        ],
        "metadata_equal": bool(
            normalized.filter(like="Metadata_").equals(raw.filter(like="Metadata_"))
        ),
    }


def main(argv: list[str]) -> None:
    logging.disable(logging.WARNING)
    wells = argv[argv.index("--wells") + 1]
    treatments = argv[: argv.index("--wells")]
    out = {"map": {path: copairs_map(path) for path in treatments}}
    out["pycytominer"] = pycytominer_steps(wells)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
