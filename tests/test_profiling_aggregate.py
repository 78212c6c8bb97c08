"""Aggregation to wells and treatments (SQL helper and SQL stages) against pandas."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from profiling_support import (
    put,
    put_no_cells,
    put_no_embeddings,
    run_sql_stage,
    run_well_profiles,
)

from cellstore.profiling.aggregate import aggregate, aggregate_sql


@pytest.fixture
def cells() -> pd.DataFrame:
    """400 cells in 2 plates x 5 wells (uneven counts), 6 float32 features."""
    rng = np.random.default_rng(11)
    n = 400
    frame = pd.DataFrame(
        {
            "Metadata_Plate": rng.choice(["P1", "P2"], n),
            "Metadata_Well": rng.choice(
                ["A01", "A02", "B01", "B02", "C03"], n, p=[0.4, 0.3, 0.2, 0.05, 0.05]
            ),
        }
    )
    for j in range(6):
        frame[f"Cells_f{j}"] = rng.normal(loc=j, scale=j + 1, size=n).astype(np.float32)
    return frame


@pytest.mark.parametrize("operation", ["mean", "median"])
@pytest.mark.parametrize("columns_per_pass", [None, 4, 1])
def test_aggregate_matches_pandas_groupby(cells, operation, columns_per_pass):
    con = duckdb.connect()
    con.register("cells", cells)
    features = [c for c in cells.columns if c.startswith("Cells_")]
    strata = ["Metadata_Plate", "Metadata_Well"]
    result = aggregate(
        con, "cells", strata, features, operation, columns_per_pass=columns_per_pass
    ).to_pandas()
    expected = cells.groupby(strata)[features].agg(operation).reset_index()
    counts = cells.groupby(strata).size().to_numpy()
    assert list(result.columns) == [*strata, "n_cells", *features]
    assert result[strata].values.tolist() == expected[strata].values.tolist()
    np.testing.assert_array_equal(result["n_cells"], counts)
    np.testing.assert_allclose(result[features], expected[features].astype(np.float64), rtol=1e-5)


def cells_with_gaps() -> pa.Table:
    """Cells in wells of 1-9 cells (odd and even), NaN and NULL values, a NULL plate."""
    rng = np.random.default_rng(7)
    sizes = [1, 2, 3, 4, 6, 9, 5, 8]
    plates = ["P1"] * 4 + ["P2"] * 3 + [None]
    plate = np.repeat(np.array(plates, dtype=object), sizes)
    well = np.repeat([f"A{i:02d}" for i in range(len(sizes))], sizes)
    order = rng.permutation(len(well))  # wells interleaved: rows must be regrouped
    n = len(well)
    f32 = rng.normal(size=n).astype(np.float32)
    f32[rng.random(n) < 0.25] = np.nan
    f64 = rng.normal(size=n)
    counts = rng.integers(0, 50, n)
    return pa.table(
        {
            "Metadata_Plate": pa.array(plate[order]),
            "Metadata_Well": pa.array(well[order]),
            "Cells_nan": pa.array(f32[order]),  # NaN values
            "Cells_null": pa.array(f32[order], mask=rng.random(n) < 0.25),  # and NULLs
            "Cells_f64": pa.array(f64[order]),
            "Nuclei_count": pa.array(counts[order], mask=rng.random(n) < 0.1),  # int with NULLs
        }
    )


def pycytominer_median(cells: pd.DataFrame, strata: list[str], features: list[str]):
    """pycytominer.aggregate's median: features as float64, pandas groupby, NaN strata kept."""
    values = cells[features].astype(float)
    return pd.concat([cells[strata], values], axis=1).groupby(strata, dropna=False).median()


@pytest.mark.parametrize("columns_per_pass", [None, 1, 3])
def test_median_is_exact_with_nan_null_values_and_null_strata(columns_per_pass):
    table = cells_with_gaps()
    con = duckdb.connect()
    con.register("cells", table)
    strata = ["Metadata_Plate", "Metadata_Well"]
    features = table.column_names[2:]
    result = aggregate(
        con, "cells", strata, features, "median", columns_per_pass=columns_per_pass
    ).to_pandas()
    cells = table.to_pandas()
    expected = pycytominer_median(cells, strata, features)
    assert list(result.columns) == [*strata, "n_cells", *features]
    keys = [tuple(None if pd.isna(v) else v for v in row) for row in result[strata].values]
    assert keys == [tuple(None if pd.isna(v) else v for v in key) for key in expected.index]
    assert keys[-1] == (None, "A07")  # null strata: a group of their own, sorted last
    np.testing.assert_array_equal(
        result["n_cells"], cells.groupby(strata, dropna=False).size().to_numpy()
    )
    np.testing.assert_array_equal(result[features].to_numpy(), expected.to_numpy())
    assert result[features].dtypes.eq(np.float64).all()


def test_median_rejects_text_features():
    con = duckdb.connect()
    con.register("cells", pa.table({"well": ["A01", "A01"], "Cells_name": ["x", "y"]}))
    with pytest.raises(ValueError, match="'Cells_name' is string: aggregation needs numbers"):
        aggregate(con, "cells", ["well"], ["Cells_name"], "median")


def test_aggregate_sql_quotes_identifiers_and_rejects_unknown_operations():
    text = aggregate_sql("t", ["plate"], ['odd "name"'], "mean")
    assert 'avg("odd ""name""") as "odd ""name"""' in text
    with pytest.raises(ValueError, match="unknown operation 'mode'"):
        aggregate_sql("t", ["plate"], ["x"], "mode")


EXTERNAL_SCHEMA = pa.schema(
    [
        ("feature_source", pa.string()),
        ("plate", pa.string()),
        ("well", pa.string()),
        ("batch", pa.string()),
        ("compound", pa.string()),
        ("concentration", pa.float64()),
        ("feature_index", pa.int32()),
        ("feature", pa.string()),
        ("value", pa.float64()),
    ]
)


def external_long(values: dict[tuple[str, str], list[float]], treatments) -> pa.Table:
    """external_profiles-shaped long table from {(plate, well): features}."""
    rows = []
    for (plate, well), features in values.items():
        compound, concentration, batch = treatments[(plate, well)]
        for i, value in enumerate(features, start=1):
            rows.append(
                {
                    "feature_source": "toy",
                    "plate": plate,
                    "well": well,
                    "batch": batch,
                    "compound": compound,
                    "concentration": concentration,
                    "feature_index": i,
                    "feature": f"Cells_f{i}",
                    "value": value,
                }
            )
    rows.reverse()  # packing must follow feature_index, not row order
    return pa.Table.from_pylist(rows, schema=EXTERNAL_SCHEMA)


def test_well_profiles_pack_external_features_in_order_and_join_moa():
    treatments = {
        ("P1", "A01"): ("DMSO", 0.0, "Week1"),
        ("P1", "A02"): ("taxol", 0.3, "Week1"),
        ("P2", "A01"): ("mystery", 1.0, "Week2"),
    }
    values = {key: [float(i), float(i) + 0.5, -float(i)] for i, key in enumerate(treatments)}
    con = duckdb.connect()
    put(con, "external_profiles", external_long(values, treatments))
    put_no_cells(con)
    put(
        con,
        "moa",
        pa.table(
            {
                "compound": ["DMSO", "taxol"],
                "concentration": [0.0, 0.3],
                "moa": ["DMSO", "Microtubule stabilizers"],
            }
        ),
    )
    built = run_well_profiles(con)
    wells = built["well_profiles"].to_pylist()
    assert [(w["plate"], w["well"]) for w in wells] == list(treatments)
    for w in wells:
        assert w["features"] == pytest.approx(values[(w["plate"], w["well"])])
        assert w["n_cells"] is None and w["feature_source"] == "toy"
    assert [w["moa"] for w in wells] == ["DMSO", "Microtubule stabilizers", None]
    [feature_set] = built["feature_sets"].to_pylist()
    assert feature_set == {
        "feature_source": "toy",
        "n_features": 3,
        "feature_names": ["Cells_f1", "Cells_f2", "Cells_f3"],
    }


def test_well_profiles_average_cell_features_per_well(cells):
    con = duckdb.connect()
    features = [c for c in cells.columns if c.startswith("Cells_")]
    cell_table = cells.rename(columns={"Metadata_Plate": "plate", "Metadata_Well": "well"})
    cell_table.insert(0, "image_id", cell_table.plate + "_" + cell_table.well + "_s1")
    cell_table.insert(1, "cell_id", [f"c{i}" for i in range(len(cell_table))])
    cell_table["Nuclei_Intensity_Mean"] = np.float32(2.0)
    cell_table["Metadata_Site"] = 1.0  # not a feature: no Nuclei_/Cells_/Cytoplasm_ prefix
    put(con, "cell_features", pa.Table.from_pandas(cell_table, preserve_index=False))
    put_no_embeddings(con)
    wells = cell_table.drop_duplicates(["plate", "well"])[["image_id", "plate", "well"]]
    fields = wells.assign(
        batch=np.where(wells.plate == "P1", "Week1", "Week2"),
        compound=np.where(wells.well == "A01", "DMSO", "taxol"),
        concentration=np.where(wells.well == "A01", 0.0, 0.3),
    )
    put(con, "images", pa.Table.from_pandas(fields, preserve_index=False))
    put(con, "moa", pa.table({"compound": ["DMSO"], "concentration": [0.0], "moa": ["DMSO"]}))
    put(con, "external_profiles", external_long({}, {}))
    built = run_well_profiles(con)
    result = built["well_profiles"].to_pandas()
    names = features + ["Nuclei_Intensity_Mean"]
    expected = cell_table.groupby(["plate", "well"])[names].mean()
    counts = cell_table.groupby(["plate", "well"]).size()
    assert len(result) == len(expected) == 10
    assert set(result.feature_source) == {"handcrafted"}
    for _, row in result.iterrows():
        key = (row.plate, row.well)
        np.testing.assert_allclose(row.features, expected.loc[key].to_numpy(), rtol=1e-5)
        assert row.n_cells == counts.loc[key]
        assert (row.moa == "DMSO") if row.well == "A01" else pd.isna(row.moa)
    [feature_set] = built["feature_sets"].to_pylist()
    assert feature_set["feature_source"] == "handcrafted"
    assert feature_set["feature_names"] == names and feature_set["n_features"] == 7


def test_treatment_profiles_are_elementwise_medians_without_dmso():
    rng = np.random.default_rng(5)
    rows = []
    layout = [("DMSO", 0.0)] * 4 + [("taxol", 0.3)] * 5 + [("taxol", 1.0)] * 2 + [("AZ138", 1.0)]
    for i, (compound, concentration) in enumerate(layout):
        for postprocessing in ("none", "tvn"):
            rows.append(
                {
                    "feature_source": "toy",
                    "postprocessing": postprocessing,
                    "plate": f"Week{1 + i % 3}_P",
                    "well": f"W{i:02d}",
                    "batch": f"Week{1 + i % 3}",
                    "compound": compound,
                    "concentration": concentration,
                    "moa": None if compound == "AZ138" else "x",
                    "n_cells": 10,
                    "features": rng.normal(size=4).astype(np.float32).tolist(),
                }
            )
    wells = pd.DataFrame(rows)
    con = duckdb.connect()
    table = pa.Table.from_pylist(rows)
    table = table.set_column(9, "features", table["features"].cast(pa.list_(pa.float32())))
    put(con, "well_profiles_normalized", table)
    result = run_sql_stage(con, "treatment_profiles").to_pandas()
    treated = wells[wells.compound != "DMSO"]
    keys = ["feature_source", "postprocessing", "compound", "concentration"]
    expected = treated.groupby(keys).features.apply(lambda f: np.median(np.stack(f), axis=0))
    assert len(result) == len(expected) == 6
    for _, row in result.iterrows():
        key = tuple(row[k] for k in keys)
        np.testing.assert_allclose(row["features"], expected.loc[key], rtol=1e-6)
        group = treated[(treated[keys] == pd.Series(key, index=keys)).all(axis=1)]
        assert row["n_wells"] == len(group)
        assert row["batch"] == ",".join(sorted(set(group.batch)))
    taxol = result[(result.compound == "taxol") & (result.concentration == 0.3)]
    assert set(taxol.batch) == {"Week1,Week2,Week3"}
