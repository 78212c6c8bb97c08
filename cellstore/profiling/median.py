"""Exact per-group medians of wide feature columns with numpy partition (pandas semantics)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class GroupLayout:
    """Where each group's rows lie in a block laid out group by group.

    groups: the distinct key rows, sorted ascending with nulls last (DuckDB's `order by`).
    positions: the block column each source row goes to, or None when the source already
        has each group in one run (per-image exports): rows then keep their places.
    starts, stops: group g is block columns [starts[g], stops[g]).
    """

    groups: pa.Table
    positions: np.ndarray | None
    starts: np.ndarray
    stops: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        return self.stops - self.starts

    @property
    def n_rows(self) -> int:
        return int(self.counts.sum())


def group_rows(keys: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """(distinct key rows sorted ascending, nulls last; each row's group index, int64).

    A null key is a group of its own, as in SQL `group by` and pandas `dropna=False`.
    Dictionary-encoded keys (DuckDB enums, pandas categoricals) are grouped and sorted by value.
    """
    if keys.num_columns == 0:
        raise ValueError("grouping needs at least one key column")
    for i, field in enumerate(keys.schema):
        if pa.types.is_dictionary(field.type):
            keys = keys.set_column(i, field.name, keys.column(i).cast(field.type.value_type))
    combined = np.zeros(keys.num_rows, dtype=np.int64)
    for column in keys.columns:
        encoded = pc.dictionary_encode(column.combine_chunks(), null_encoding="encode")
        combined = combined * len(encoded.dictionary) + encoded.indices.to_numpy()
        # Renumber densely so the mixed radix never overflows, however many key columns.
        _, combined = np.unique(combined, return_inverse=True)
    _, first_rows, codes = np.unique(combined, return_index=True, return_inverse=True)
    groups = keys.take(first_rows)
    sort_keys = [(name, "ascending", "at_end") for name in groups.column_names]
    by_key = pc.sort_indices(groups, sort_keys=sort_keys).to_numpy()
    rank = np.empty_like(by_key)
    rank[by_key] = np.arange(len(by_key))
    return groups.take(by_key), rank[codes].astype(np.int64)


def layout_groups(keys: pa.Table) -> GroupLayout:
    """Group the rows of `keys`; keep the row order when every group is already one run."""
    groups, codes = group_rows(keys)
    n_groups = groups.num_rows
    counts = np.bincount(codes, minlength=n_groups)
    run_starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else codes
    if len(run_starts) == n_groups:  # one run per group: rows stay where they are
        starts = np.empty(n_groups, dtype=np.int64)
        starts[codes[run_starts]] = run_starts
        return GroupLayout(groups, None, starts, starts + counts)
    stops = np.cumsum(counts)
    positions = np.empty(len(codes), dtype=np.int64)
    positions[np.argsort(codes, kind="stable")] = np.arange(len(codes))
    return GroupLayout(groups, positions, stops - counts, stops)


def block_dtype(schema: pa.Schema) -> np.dtype:
    """float32 when every column is float32 (halves memory and selection time), else float64."""
    for field in schema:
        numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
        if not (numeric or pa.types.is_boolean(field.type) or pa.types.is_decimal(field.type)):
            raise ValueError(f"column {field.name!r} is {field.type}: a median needs numbers")
    all_float32 = all(field.type == pa.float32() for field in schema)
    return np.dtype(np.float32 if all_float32 else np.float64)


def fill_block(batches: Iterable[pa.RecordBatch], layout: GroupLayout, block: np.ndarray) -> None:
    """Write streamed rows into `block` (n_columns, n_rows), each row at its layout position.

    Nulls become NaN. Streaming into one reused block keeps memory at the block plus a
    batch, and spares the page faults of a fresh result array per pass.
    """
    offset = 0
    for batch in batches:
        stop = offset + batch.num_rows
        if stop > block.shape[1]:
            raise ValueError(f"the source returned more than the {block.shape[1]} rows it had")
        where = slice(offset, stop) if layout.positions is None else layout.positions[offset:stop]
        for row, column in zip(block, batch.columns, strict=True):
            if not pa.types.is_floating(column.type):  # integers, booleans, decimals
                column = column.cast(pa.float64(), safe=False)  # as pandas' astype(float)
            row[where] = column.to_numpy(zero_copy_only=False)  # nulls → NaN
        offset = stop
    if offset != block.shape[1]:
        raise ValueError(f"the source returned {offset} rows, expected {block.shape[1]}")


def grouped_median(block: np.ndarray, layout: GroupLayout) -> np.ndarray:
    """(n_groups, n_columns) float64 medians of a laid-out (n_columns, n_rows) block.

    Exact, as pandas' `groupby().median()`: NaNs are skipped, an even count averages the
    two middle values in float64, a group with no values gives NaN.
    """
    result = np.empty((len(layout.starts), block.shape[0]), dtype=np.float64)
    may_have_nan = bool(np.isnan(block).any())
    for g, (start, stop) in enumerate(zip(layout.starts, layout.stops, strict=True)):
        values = block[:, start:stop]  # (n_columns, n_rows_of_group)
        if may_have_nan and np.isnan(values).any():
            result[g] = _median_skipping_nan(values)
        else:
            result[g] = _median(values)
    return result


def column_median(values: np.ndarray) -> np.ndarray:
    """(k,) float64 row medians of a (k, m) block, skipping NaN (NaN where a row has none)."""
    if values.shape[1] == 0:
        return np.full(values.shape[0], np.nan)
    if np.isnan(values).any():
        return _median_skipping_nan(values)
    return _median(values)


def _median(values: np.ndarray) -> np.ndarray:
    """Row medians of a NaN-free (k, m) block, m >= 1: one selection per row."""
    half = values.shape[1] // 2
    parts = np.partition(values, half, axis=1)
    upper = parts[:, half].astype(np.float64)
    if values.shape[1] % 2:
        return upper
    # Everything left of `half` is <= the upper middle value; its maximum is the lower one.
    return (parts[:, :half].max(axis=1) + upper) / 2


def _median_skipping_nan(values: np.ndarray) -> np.ndarray:
    """Row medians of a (k, m) block over its non-NaN values (sort puts NaNs last)."""
    ordered = np.sort(values, axis=1).astype(np.float64)
    n_valid = (~np.isnan(values)).sum(axis=1)
    lower = np.take_along_axis(ordered, np.maximum(n_valid - 1, 0)[:, None] // 2, axis=1)
    upper = np.take_along_axis(ordered, np.minimum(n_valid // 2, values.shape[1] - 1)[:, None], 1)
    medians = (lower[:, 0] + upper[:, 0]) / 2
    return np.where(n_valid > 0, medians, np.nan)
