"""Post-processing variants of every well profile: none, standardize, robustize, whitening, tvn."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cellstore.profiling.controls import CONTROL_COMPOUND
from cellstore.stage import stage

METADATA_COLUMNS = (
    "feature_source",
    "plate",
    "well",
    "batch",
    "compound",
    "concentration",
    "moa",
    "n_cells",
)


def feature_matrix(features: pa.ChunkedArray, where: str) -> np.ndarray:
    """A FLOAT[] column whose lists all have one length → float64 (n, d)."""
    array = features.combine_chunks()
    if array.null_count:
        raise ValueError(f"{where}: {array.null_count} well(s) have no feature vector")
    lengths = np.unique(array.value_lengths().to_numpy())
    if len(lengths) > 1:
        raise ValueError(f"{where}: feature vectors differ in length ({lengths.tolist()})")
    width = int(lengths[0]) if len(lengths) else 0
    values = array.flatten().to_numpy(zero_copy_only=False)
    return values.astype(np.float64).reshape(len(array), width)


def list_column(matrix: np.ndarray) -> pa.ListArray:
    """float (n, d) → FLOAT[] column of n lists."""
    n, d = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.astype(np.float32).reshape(-1)))


@stage
def well_profiles_normalized(
    well_profiles: duckdb.DuckDBPyRelation,
    *,
    variants: tuple[str, ...] = ("none", "standardize", "robustize", "whitening", "tvn"),
    regularization: float = 1.0,
    scale_before_whitening: bool = True,
    control_compound: str = CONTROL_COMPOUND,
) -> pa.Table:
    """Each well profile under each post-processing variant, fitted per feature source.

    Grain: (feature_source, postprocessing, plate, well). Controls are the
    `control_compound` wells. standardize / robustize: per plate against its controls
    (pycytominer). whitening: centre on the control mean, PCA-whiten on control wells with
    eigenvalue regulariser λ = `regularization`, rotated back so each column keeps its
    feature's name (ZCA; cosine similarities equal PCA whitening's). tvn: whitening, then
    CORAL per batch (Week). `scale_before_whitening` z-scores features against all control
    wells first, so λ means the same for every feature (CellProfiler scales span 1e-3..1e3).
    """
    from threadpoolctl import threadpool_limits

    from cellstore.profiling.normalize import VARIANTS, postprocess

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown post-processing {unknown}: expected some of {VARIANTS}")
    table = well_profiles.order("feature_source, plate, well").to_arrow_table()
    sources = table.column("feature_source").unique().to_pylist()
    parts: list[pa.Table] = []
    for source in sources:
        rows = table.filter(pc.equal(table.column("feature_source"), source))
        x = feature_matrix(rows.column("features"), f"well_profiles, feature source {source}")
        is_control = np.asarray(rows.column("compound").to_pylist()) == control_compound
        if not is_control.any():
            raise ValueError(
                f"well_profiles: feature source {source} has no {control_compound} wells "
                "to normalise against"
            )
        plates = np.asarray(rows.column("plate").to_pylist())
        batches = np.asarray(rows.column("batch").to_pylist())
        for variant in variants:
            # Multi-threaded OpenBLAS eigh of a ~500 x 500 matrix spins for seconds on a
            # busy 2-core machine (3.3 s vs 0.02 s single-threaded, measured).
            with threadpool_limits(limits=1, user_api="blas"):
                normalized = postprocess(
                    x,
                    variant,
                    plates=plates,
                    batches=batches,
                    is_control=is_control,
                    regularization=regularization,
                    scale_before_whitening=scale_before_whitening,
                )
            columns = {name: rows.column(name) for name in METADATA_COLUMNS}
            columns["postprocessing"] = pa.array([variant] * rows.num_rows, pa.string())
            columns["features"] = list_column(normalized)
            parts.append(pa.table(columns))
    order = ["feature_source", "postprocessing", *METADATA_COLUMNS[1:], "features"]
    if not parts:
        empty = table.schema.append(pa.field("postprocessing", pa.string()))
        return empty.empty_table().select(order)
    return pa.concat_tables(parts).select(order)
