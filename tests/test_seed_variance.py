"""benchmarks/seed_variance.py: its arguments and the feature swap it scores."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from benchmarks.seed_variance import parse_seeds, parse_variant, with_features


def test_seed_ranges_and_lists():
    assert parse_seeds("8-11,20") == [8, 9, 10, 11, 20]
    assert parse_seeds("3,5") == [3, 5]


def test_a_variant_sets_only_float_constants_of_the_phenotype_model():
    assert parse_variant("PLATE_NOISE=0 WELL_NOISE=0.02") == {
        "PLATE_NOISE": 0.0,
        "WELL_NOISE": 0.02,
    }
    with pytest.raises(SystemExit, match="NO_SUCH_NOISE"):
        parse_variant("NO_SUCH_NOISE=1")
    with pytest.raises(SystemExit, match="AXES"):  # a tuple, not a float
        parse_variant("AXES=1")


def test_predicted_features_replace_the_rows_features_in_order():
    wells = pa.table(
        {
            "plate": ["p1", "p2"],
            "features": pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float32())),
        }
    )
    swapped = with_features(wells, np.array([[5.0, 6.0], [7.0, 8.0]]))
    assert swapped["plate"].to_pylist() == ["p1", "p2"]
    assert swapped["features"].to_pylist() == [[5.0, 6.0], [7.0, 8.0]]
    assert swapped.schema == wells.schema
