"""Well profiles of declared feature sources: one FLOAT[] per (feature_source, plate, well)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from cellstore.profiling.aggregate import ROWS_PER_BATCH, quote
from cellstore.profiling.feature_sources import WELL_METADATA, FeatureSource
from cellstore.profiling.grouped import Features, grouped_mean

PROFILE_SCHEMA = pa.schema(
    [
        ("feature_source", pa.string()),
        ("plate", pa.string()),
        ("well", pa.string()),
        ("batch", pa.string()),
        ("compound", pa.string()),
        ("concentration", pa.float64()),
        ("moa", pa.string()),
        ("n_cells", pa.int64()),
        ("features", pa.list_(pa.float32())),
    ]
)
FEATURE_SET_SCHEMA = pa.schema(
    [
        ("feature_source", pa.string()),
        ("n_features", pa.int32()),
        ("feature_names", pa.list_(pa.string())),
    ]
)


@dataclass
class SourceWells:
    """The wells of one feature source, before treatment metadata is attached."""

    name: str
    plates: list[str]
    wells: list[str]
    n_cells: np.ndarray | None  # None: well-level source, no cell counts
    treatments: list[tuple[str, str, float]] | None  # (batch, compound, concentration)
    features: np.ndarray  # float (n_wells, n_features)
    feature_names: list[str]


def build_well_profiles(
    images: duckdb.DuckDBPyRelation,
    moa: duckdb.DuckDBPyRelation,
    tables: dict[str, duckdb.DuckDBPyRelation],
    sources: list[FeatureSource],
) -> dict[str, pa.Table]:
    """`well_profiles` and `feature_sets` of every source (a source without rows has neither)."""
    found: list[SourceWells] = []
    for source in sources:
        found.extend(source_wells(tables[source.table], source))
    names = [s.name for s in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"well_profiles: feature source(s) {twice} come from two declarations")
    treatments = _well_treatments(images)
    labels = {
        (compound, concentration): label
        for compound, concentration, label in moa.select("compound, concentration, moa").fetchall()
    }
    parts = [_profile_table(s, treatments, labels) for s in sorted(found, key=lambda s: s.name)]
    profiles = pa.concat_tables(parts) if parts else PROFILE_SCHEMA.empty_table()
    sets = pa.Table.from_pylist(
        [
            {
                "feature_source": s.name,
                "n_features": len(s.feature_names),
                "feature_names": s.feature_names,
            }
            for s in sorted(found, key=lambda s: s.name)
        ],
        schema=FEATURE_SET_SCHEMA,
    )
    return {"well_profiles": profiles, "feature_sets": sets}


def source_wells(relation: duckdb.DuckDBPyRelation, source: FeatureSource) -> Iterator[SourceWells]:
    """The wells of each feature source a declaration makes (one per `source_column` value)."""
    if source.source_column is None:
        assert source.name is not None
        yield from _wells_of(relation, source, source.name)
        return
    column = quote(source.source_column)
    values = [r[0] for r in relation.select(column).distinct().order(column).fetchall()]
    if None in values:
        raise ValueError(
            f"well_profiles: {source.table}.{source.source_column} is NULL in some rows: "
            "every row must name its feature source"
        )
    for value in values:
        literal = "'" + str(value).replace("'", "''") + "'"
        yield from _wells_of(relation.filter(f"{column} = {literal}"), source, str(value))


def _wells_of(
    relation: duckdb.DuckDBPyRelation, source: FeatureSource, name: str
) -> Iterator[SourceWells]:
    if source.layout == "long":
        yield from _long_wells(relation, source, name)
        return
    strata = [source.plate, source.well]
    if source.grain == "well":
        strata += list(WELL_METADATA)
    if source.layout == "vector":
        assert source.vector is not None
        features = Features(vector=source.vector)
    else:
        features = Features(tuple(source.wide_columns(relation.columns)))
        if not features.columns:
            raise ValueError(f"well_profiles: {source.table} has no feature column of {name}")
    wanted = ", ".join(quote(c) for c in [*strata, *features.names])
    reader = relation.select(wanted).to_arrow_reader(ROWS_PER_BATCH)
    result = grouped_mean(reader, strata, features)
    if not len(result.counts):
        return
    if result.missing.any():
        raise ValueError(f"well_profiles: feature source {name} has wells with NULL features")
    if features.vector is not None:
        width = result.values.shape[1]
        feature_names = [f"{source.vector}_{i:04d}" for i in range(1, width + 1)]
    else:
        feature_names = list(features.columns)
    groups = result.groups
    treatments = None
    if source.grain == "well":
        if (result.counts > 1).any():
            raise ValueError(
                f"well_profiles: well-level source {name} has several rows for one well"
            )
        treatments = list(zip(*(groups.column(c).to_pylist() for c in WELL_METADATA), strict=True))
    yield SourceWells(
        name=name,
        plates=groups.column(source.plate).to_pylist(),
        wells=groups.column(source.well).to_pylist(),
        n_cells=result.counts if source.grain == "cell" else None,
        treatments=treatments,
        features=result.values,
        feature_names=feature_names,
    )


def _long_wells(
    relation: duckdb.DuckDBPyRelation, source: FeatureSource, name: str
) -> Iterator[SourceWells]:
    """One row per (well, feature) → one vector per well, packed by the feature index."""
    plate, well, index = quote(source.plate), quote(source.well), quote(source.index)
    value, feature = quote(source.value), quote(source.feature)
    metadata = ", ".join(quote(c) for c in WELL_METADATA)
    rows = relation.query(
        "source_rows",
        f"select {plate}, {well}, {metadata}, list({value}::float order by {index}) "
        f"from source_rows group by all order by {plate}, {well}",
    ).fetchall()
    if not rows:
        return
    names = relation.query(
        "source_rows",
        f"select list({feature} order by {index}) from "
        f"(select distinct {index}, {feature} from source_rows)",
    ).fetchone()[0]
    widths = {len(r[-1]) for r in rows}
    if len(widths) > 1:
        raise ValueError(f"well_profiles: wells of {name} differ in feature count ({widths})")
    yield SourceWells(
        name=name,
        plates=[r[0] for r in rows],
        wells=[r[1] for r in rows],
        n_cells=None,
        treatments=[(r[2], r[3], r[4]) for r in rows],
        features=np.array([r[-1] for r in rows], dtype=np.float32),
        feature_names=list(names),
    )


def _well_treatments(images: duckdb.DuckDBPyRelation) -> dict[tuple[str, str], tuple]:
    """(plate, well) → (batch, compound, concentration) from the image metadata."""
    rows = images.aggregate(
        "plate, well, any_value(batch), any_value(compound), any_value(concentration)",
        "plate, well",
    ).fetchall()
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}


def _profile_table(
    wells: SourceWells,
    treatments: dict[tuple[str, str], tuple],
    labels: dict[tuple[str, float], str | None],
) -> pa.Table:
    """The source's rows of well_profiles, sorted by plate, well."""
    if wells.treatments is None:
        missing = [k for k in zip(wells.plates, wells.wells, strict=True) if k not in treatments]
        if missing:
            sample = ", ".join(f"{p}/{w}" for p, w in missing[:5])
            raise ValueError(
                f"well_profiles: {len(missing)} well(s) of feature source {wells.name} have no "
                f"field in images ({sample})"
            )
        meta = [treatments[k] for k in zip(wells.plates, wells.wells, strict=True)]
    else:
        meta = wells.treatments
    n, d = wells.features.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
    vectors = pa.ListArray.from_arrays(
        offsets, pa.array(wells.features.astype(np.float32).reshape(-1))
    )
    counts = (
        pa.array(wells.n_cells, pa.int64())
        if wells.n_cells is not None
        else pa.nulls(n, pa.int64())
    )
    table = pa.table(
        {
            "feature_source": pa.array([wells.name] * n, pa.string()),
            "plate": pa.array(wells.plates, pa.string()),
            "well": pa.array(wells.wells, pa.string()),
            "batch": pa.array([m[0] for m in meta], pa.string()),
            "compound": pa.array([m[1] for m in meta], pa.string()),
            "concentration": pa.array([m[2] for m in meta], pa.float64()),
            "moa": pa.array([labels.get((m[1], m[2])) for m in meta], pa.string()),
            "n_cells": counts,
            "features": vectors,
        },
        schema=PROFILE_SCHEMA,
    )
    return table.sort_by([("plate", "ascending"), ("well", "ascending")])
