"""Grouping and exact per-group medians (numpy partition) against pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellstore.profiling.median import (
    block_dtype,
    fill_block,
    group_rows,
    grouped_median,
    layout_groups,
)

GROUP_SIZES = [1, 2, 3, 4, 5, 8, 11]  # odd and even counts, a single cell


def planted_cells(contiguous: bool, seed: int = 3) -> pd.DataFrame:
    """Cells of len(GROUP_SIZES) wells with float32 features, NaNs, ties and one all-NaN cell."""
    rng = np.random.default_rng(seed)
    wells = np.repeat([f"W{i}" for i in range(len(GROUP_SIZES))], GROUP_SIZES)
    n = len(wells)
    frame = pd.DataFrame({"well": wells})
    frame["f_normal"] = rng.normal(size=n).astype(np.float32)
    frame["f_ties"] = rng.integers(0, 3, n).astype(np.float32)  # many equal values
    with_nan = rng.normal(size=n).astype(np.float32)
    with_nan[rng.random(n) < 0.3] = np.nan
    with_nan[wells == "W0"] = np.nan  # a well whose only value is missing → NaN median
    frame["f_nan"] = with_nan
    frame["f_inf"] = np.where(rng.random(n) < 0.2, np.float32(np.inf), frame.f_normal)
    if not contiguous:
        frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return frame


@pytest.mark.parametrize("contiguous", [True, False])
def test_grouped_median_matches_pandas_on_even_odd_and_nan_groups(contiguous):
    cells = planted_cells(contiguous)
    features = [c for c in cells.columns if c.startswith("f_")]
    layout = layout_groups(pa.table({"well": cells.well.to_numpy()}))
    assert (layout.positions is None) == contiguous  # in-place only when groups are runs
    table = pa.Table.from_pandas(cells[features], preserve_index=False)
    block = np.empty((len(features), len(cells)), dtype=block_dtype(table.schema))
    assert block.dtype == np.float32
    fill_block(table.to_batches(max_chunksize=7), layout, block)
    result = grouped_median(block, layout)
    # As pycytominer: features cast to float64, then pandas' median (NaN skipped).
    expected = cells.astype(dict.fromkeys(features, float)).groupby("well")[features].median()
    assert layout.groups.column("well").to_pylist() == expected.index.tolist()
    np.testing.assert_array_equal(layout.counts, cells.groupby("well").size().to_numpy())
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result, expected.to_numpy())
    assert np.isnan(result[0, features.index("f_nan")])


def test_fill_block_turns_nulls_into_nan_and_mixed_types_into_float64():
    table = pa.table(
        {
            "a": pa.array([1, None, 3, 4], pa.int32()),
            "b": pa.array([0.5, 1.5, None, 2.5], pa.float32()),
            "c": pa.array([True, False, None, True]),
        }
    )
    layout = layout_groups(pa.table({"g": ["x", "y", "x", "y"]}))
    block = np.empty((3, 4), dtype=block_dtype(table.schema))
    assert block.dtype == np.float64
    fill_block(table.to_batches(), layout, block)
    # Non-contiguous groups: rows are written group by group (x rows 0, 2 then y rows 1, 3).
    np.testing.assert_array_equal(
        block, [[1, 3, np.nan, 4], [0.5, np.nan, 1.5, 2.5], [1, np.nan, 0, 1]]
    )
    np.testing.assert_array_equal(grouped_median(block, layout), [[2, 0.5, 1], [4, 2, 0.5]])


def test_fill_block_rejects_text_columns_and_wrong_row_counts():
    with pytest.raises(ValueError, match="column 'name' is string"):
        block_dtype(pa.schema([("x", pa.float32()), ("name", pa.string())]))
    layout = layout_groups(pa.table({"g": ["a", "a", "b"]}))
    short = pa.table({"x": pa.array([1.0, 2.0], pa.float32())})
    with pytest.raises(ValueError, match="returned 2 rows, expected 3"):
        fill_block(short.to_batches(), layout, np.empty((1, 3), np.float32))


def test_group_rows_sorts_keys_with_null_and_dictionary_values_last():
    keys = pa.table(
        {
            "plate": pa.array(["P2", "P1", None, "P1", "P2"]).dictionary_encode(),
            "well": pa.array(["B01", "A01", "A01", None, "B01"]),
        }
    )
    groups, codes = group_rows(keys)
    assert groups.to_pylist() == [
        {"plate": "P1", "well": "A01"},
        {"plate": "P1", "well": None},
        {"plate": "P2", "well": "B01"},
        {"plate": None, "well": "A01"},
    ]
    np.testing.assert_array_equal(codes, [2, 0, 3, 1, 2])


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=6),
    nan_fraction=st.sampled_from([0.0, 0.2, 0.9]),
    seed=st.integers(0, 2**16),
)
def test_grouped_median_equals_pandas_for_any_group_sizes(sizes, nan_fraction, seed):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(groups)
    values = rng.integers(-3, 4, (len(groups), 3)).astype(np.float32)  # ties are common
    values[rng.random(values.shape) < nan_fraction] = np.nan
    layout = layout_groups(pa.table({"g": groups}))
    block = np.empty((3, len(groups)), np.float32)
    fill_block(pa.table({f"f{j}": values[:, j] for j in range(3)}).to_batches(), layout, block)
    expected = pd.DataFrame(values.astype(float)).groupby(groups).median()
    np.testing.assert_array_equal(grouped_median(block, layout), expected.to_numpy())
