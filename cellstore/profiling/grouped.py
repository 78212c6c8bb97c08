"""Grouped means and exact medians of streamed Arrow batches: wide columns or one FLOAT[] column.

Rows arrive as record batches holding the strata (key) columns and the features, either as
one numeric column per feature ("wide", CellProfiler style) or as one list column of equal
length vectors ("vector", an embedding). Memory stays at a batch plus the per-group sums
(means) or a batch plus the open group (medians of groups that arrive as runs, as cells of
a well in per-image exports); other row orders take a bounded multi-pass route.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cellstore.profiling.median import GroupLayout, column_median
from cellstore.profiling.median import grouped_median as grouped_median_block

MEDIAN_VALUES_PER_PASS = 32 * 2**20  # values held per median pass off runs: 128 MiB float32
MEDIAN_ROWS_PER_BLOCK = 2**14  # rows of a wide batch stacked (transposed) at a time

# A re-readable source: scan(columns) streams record batches holding these columns.
Scan = Callable[[Sequence[str]], Iterable[pa.RecordBatch]]


@dataclass(frozen=True)
class Features:
    """Which columns hold the features: wide numeric `columns`, or one list column `vector`."""

    columns: tuple[str, ...] = ()
    vector: str | None = None

    def __post_init__(self) -> None:
        if self.vector is not None and self.columns:
            raise ValueError("features are either wide columns or one vector column")

    @property
    def names(self) -> list[str]:
        return [self.vector] if self.vector is not None else list(self.columns)


@dataclass(frozen=True)
class Grouped:
    """Per-group results, groups sorted ascending with nulls last (DuckDB's `order by`).

    groups: the distinct strata rows; counts: rows per group (int64); values: float64
    (n_groups, n_features); missing: True where a group had no value of a feature.
    """

    groups: pa.Table
    counts: np.ndarray
    values: np.ndarray
    missing: np.ndarray


class GroupCodes:
    """Numbers each distinct strata row in order of first appearance, across batches."""

    def __init__(self, strata: Sequence[str]):
        if not strata:
            raise ValueError("grouping needs at least one strata column")
        self.strata = list(strata)
        self.index: dict[tuple, int] = {}
        self.keys: list[tuple] = []
        self.types: list[pa.DataType] | None = None

    def encode(self, batch: pa.RecordBatch) -> np.ndarray:
        """int64 group number of every row of `batch` (a NULL key is a value of its own)."""
        combined = np.zeros(batch.num_rows, dtype=np.int64)
        dictionaries: list[list] = []
        indices: list[np.ndarray] = []
        types: list[pa.DataType] = []
        for name in self.strata:
            column = batch.column(name)
            if pa.types.is_dictionary(column.type):  # DuckDB enums: group by value
                column = column.cast(column.type.value_type)
            types.append(column.type)
            encoded = pc.dictionary_encode(column, null_encoding="encode")
            dictionaries.append(encoded.dictionary.to_pylist())
            indices.append(encoded.indices.to_numpy(zero_copy_only=False))
            combined = combined * len(encoded.dictionary) + indices[-1]
            _, combined = np.unique(combined, return_inverse=True)  # dense: never overflows
        if self.types is None:
            self.types = types
        if not batch.num_rows:
            return combined
        _, first = np.unique(combined, return_index=True)
        mapping = np.empty(len(first), dtype=np.int64)
        for local, row in enumerate(first):
            key = tuple(d[i[row]] for d, i in zip(dictionaries, indices, strict=True))
            code = self.index.get(key)
            if code is None:
                code = self.index[key] = len(self.keys)
                self.keys.append(key)
            mapping[local] = code
        return mapping[combined]

    def sorted_groups(self) -> tuple[pa.Table, np.ndarray]:
        """(groups sorted ascending with nulls last, the code of each sorted group)."""
        types = self.types or [pa.string()] * len(self.strata)
        table = pa.table(
            {
                name: pa.array([key[i] for key in self.keys], type=kind)
                for i, (name, kind) in enumerate(zip(self.strata, types, strict=True))
            }
        )
        sort_keys = [(s, "ascending", "at_end") for s in self.strata]
        order = pc.sort_indices(table, sort_keys=sort_keys).to_numpy()
        return table.take(order), order.astype(np.int64)


def check_features(schema: pa.Schema, features: Features) -> None:
    """Every feature column is numeric; a vector column is a list of numbers."""
    for name in features.names:
        if schema.get_field_index(name) < 0:
            raise ValueError(f"no feature column {name!r} (columns: {schema.names})")
        kind = schema.field(name).type
        if features.vector is not None:
            if not (
                pa.types.is_list(kind)
                or pa.types.is_large_list(kind)
                or pa.types.is_fixed_size_list(kind)
            ):
                raise ValueError(f"column {name!r} is {kind}: a vector column must be a list")
            kind = kind.value_type
        numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
        if not (numeric or pa.types.is_boolean(kind) or pa.types.is_decimal(kind)):
            raise ValueError(f"column {name!r} is {kind}: aggregation needs numbers")


def _as_float(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric column as float32 / float64 numpy (NULL → NaN), zero-copy where possible."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_floating(column.type) or pa.types.is_float16(column.type):
        column = column.cast(pa.float64(), safe=False)  # as pandas' astype(float)
    return column.to_numpy(zero_copy_only=False)


def vector_matrix(column: pa.Array | pa.ChunkedArray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A list column of equal-length vectors → ((n, d) float matrix, valid-row mask).

    The matrix views the list's value buffer (no copy for float vectors without NULLs); a
    NULL vector gives a row of NaN and valid False.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    valid = np.ones(n, dtype=bool)
    if column.null_count:
        valid = column.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
    else:
        lengths = column.value_lengths().to_numpy(zero_copy_only=False)
        widths = np.unique(lengths[valid]) if n else np.array([], dtype=np.int64)
        if len(widths) > 1:
            raise ValueError(f"vectors of column {name!r} differ in length ({widths.tolist()})")
        width = int(widths[0]) if len(widths) else 0
    if column.null_count:
        # Null lists hold no values: put a row of NaN in their place.
        fill = pa.array([[np.nan] * width], type=pa.list_(column.type.value_type))[0]
        column = pc.if_else(column.is_valid(), column, pa.scalar(fill.values, column.type))
    values = column.flatten()
    if values.null_count:
        raise ValueError(f"column {name!r} has vectors with NULL elements")
    flat = _as_float(values)
    return flat.reshape(n, width), valid


def _runs(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start row, stop row) of each run of equal codes."""
    if not len(codes):
        return codes, codes
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    return starts, np.r_[starts[1:], len(codes)]


class _Sums:
    """float64 sums per (group, feature), rows per group, NULLs per (group, feature)."""

    def __init__(self, n_features: int) -> None:
        self.n_features = n_features
        self.sums = np.zeros((0, n_features))
        self.rows = np.zeros(0, dtype=np.int64)
        self.nulls: np.ndarray | None = None  # allocated at the first NULL value

    def reserve(self, n_groups: int) -> None:
        if n_groups <= len(self.rows):
            return
        grow = max(n_groups, 2 * len(self.rows), 1024) - len(self.rows)
        self.sums = np.vstack([self.sums, np.zeros((grow, self.n_features))])
        self.rows = np.r_[self.rows, np.zeros(grow, dtype=np.int64)]
        if self.nulls is not None:
            self.nulls = np.vstack([self.nulls, np.zeros((grow, self.n_features), np.int64)])

    def add_nulls(self, codes: np.ndarray, column: int, counts: np.ndarray) -> None:
        if self.nulls is None:
            self.nulls = np.zeros(self.sums.shape, dtype=np.int64)
        self.nulls[codes, column] += counts


def grouped_mean(
    batches: Iterable[pa.RecordBatch], strata: Sequence[str], features: Features
) -> Grouped:
    """Means per group, as SQL `avg`: float64 sums, NULLs skipped, a NaN value gives NaN.

    Rows of a batch are regrouped by a stable sort when their groups are not already runs;
    each feature column is summed per run with one `np.add.reduceat` (no copy of the batch).
    """
    codes_of = GroupCodes(strata)
    state: _Sums | None = None
    for batch in batches:
        if state is None:
            check_features(batch.schema, features)
        codes = codes_of.encode(batch)
        if not len(codes):
            continue
        order = None
        if not np.all(codes[1:] >= codes[:-1]):
            order = np.argsort(codes, kind="stable")
            codes = codes[order]
        starts, stops = _runs(codes)
        run_codes = codes[starts]  # distinct: codes are sorted
        if state is None:
            state = _Sums(_n_features(batch, features))
        state.reserve(len(codes_of.keys))
        state.rows[run_codes] += stops - starts
        if features.vector is not None:
            matrix, valid = vector_matrix(batch.column(features.vector), features.vector)
            if matrix.shape[1] != state.n_features:
                raise ValueError(
                    f"vectors of column {features.vector!r} differ in length "
                    f"({sorted({state.n_features, matrix.shape[1]})})"
                )
            if order is not None:
                matrix, valid = matrix[order], valid[order]
            for code, start, stop in zip(run_codes, starts, stops, strict=True):
                rows = matrix[start:stop]
                if not valid[start:stop].all():
                    rows = rows[valid[start:stop]]
                    state.add_nulls(np.array([code]), slice(None), stop - start - len(rows))
                state.sums[code] += rows.sum(axis=0, dtype=np.float64)
            continue
        sums = np.empty((len(features.columns), len(starts)))  # (d, n_runs) of this batch
        for j, name in enumerate(features.columns):
            column = batch.column(name)
            values = _as_float(column)
            if order is not None:
                values = values[order]
            if column.null_count:
                valid = column.is_valid().to_numpy(zero_copy_only=False)
                if order is not None:
                    valid = valid[order]
                values = np.where(valid, values, 0)
                n_valid = np.add.reduceat(valid, starts, dtype=np.int64)
                state.add_nulls(run_codes, j, (stops - starts) - n_valid)
            np.add.reduceat(values, starts, dtype=np.float64, out=sums[j])
        state.sums[run_codes] += sums.T
    groups, order = codes_of.sorted_groups()
    width = state.n_features if state is not None else len(features.columns)
    if state is None:
        empty = np.zeros((0, width))
        return Grouped(groups, np.zeros(0, np.int64), empty, empty.astype(bool))
    rows = state.rows[order]
    counts = rows[:, None] - (state.nulls[order] if state.nulls is not None else 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = state.sums[order] / counts
    return Grouped(groups, rows, means, np.broadcast_to(counts == 0, means.shape).copy())


def _n_features(batch: pa.RecordBatch, features: Features) -> int:
    if features.vector is None:
        return len(features.columns)
    column = batch.column(features.vector)
    if pa.types.is_fixed_size_list(column.type):
        return column.type.list_size
    lengths = column.value_lengths().drop_null().to_numpy(zero_copy_only=False)
    return int(lengths[0]) if len(lengths) else 0


def _sliced(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """The batches cut into slices of at most `rows` rows (views, no copy)."""
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


class NotRuns(Exception):
    """A group's rows came back after another group started: they are not one run each."""


def _median_block(batch: pa.RecordBatch, features: Features) -> tuple[np.ndarray, bool]:
    """(block, transposed): (d, n) values of a wide batch, or the (n, d) vector matrix."""
    if features.vector is not None:
        matrix, _ = vector_matrix(batch.column(features.vector), features.vector)
        return matrix, True
    columns = [_as_float(batch.column(name)) for name in features.columns]
    dtype = np.result_type(*columns) if columns else np.float64
    return np.stack([c.astype(dtype, copy=False) for c in columns]), False


def grouped_median_runs(
    batches: Iterable[pa.RecordBatch],
    strata: Sequence[str],
    features: Features,
    *,
    pool: object | None = None,
) -> Grouped:
    """Exact medians of groups whose rows arrive as one run each, in one streaming pass.

    Raises NotRuns as soon as a group reappears. pool: an executor whose `map` spreads the
    per-group selections over threads (numpy releases the GIL while it partitions).
    """
    codes_of = GroupCodes(strata)
    results: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    open_code = -1
    open_parts: list[np.ndarray] = []  # (d, m) pieces of the group still arriving
    checked = False
    mapper = pool.map if pool is not None else map  # type: ignore[attr-defined]
    last_code = -1
    for batch in _sliced(batches, MEDIAN_ROWS_PER_BLOCK):
        if not checked:
            check_features(batch.schema, features)
            checked = True
        codes = codes_of.encode(batch)
        if not len(codes):
            continue
        if codes[0] < last_code or not np.all(codes[1:] >= codes[:-1]):
            raise NotRuns
        last_code = int(codes[-1])
        block, transposed = _median_block(batch, features)

        def piece(start: int, stop: int, block=block, transposed=transposed) -> np.ndarray:
            if transposed:
                return np.ascontiguousarray(block[start:stop].T)  # (d, m)
            return block[:, start:stop]

        starts, stops = _runs(codes)
        done: list[tuple[int, np.ndarray]] = []
        for code, start, stop in zip(codes[starts], starts, stops, strict=True):
            code = int(code)
            if code == open_code:
                open_parts.append(np.array(piece(start, stop)))
                continue
            if open_code >= 0:
                done.append((open_code, np.concatenate(open_parts, axis=1)))
            open_code, open_parts = code, []
            if stop < len(codes):
                done.append((code, piece(start, stop)))
                open_code = -1
            else:
                open_parts = [np.array(piece(start, stop))]  # may continue in the next batch
        for code, values in done:
            counts[code] = values.shape[1]
        for (code, _), medians in zip(
            done, mapper(column_median, [v for _, v in done]), strict=True
        ):
            results[code] = medians
    if open_code >= 0:
        values = np.concatenate(open_parts, axis=1)
        counts[open_code] = values.shape[1]
        results[open_code] = column_median(values)
    return _assemble(codes_of, results, counts, features)


def _assemble(
    codes_of: GroupCodes, results: dict[int, np.ndarray], counts: dict[int, int], features: Features
) -> Grouped:
    groups, order = codes_of.sorted_groups()
    width = len(next(iter(results.values()))) if results else len(features.columns)
    values = np.empty((len(order), width))
    for i, code in enumerate(order):
        values[i] = results[int(code)]
    n_rows = np.array([counts[int(c)] for c in order], dtype=np.int64)
    return Grouped(groups, n_rows, values, np.zeros(values.shape, dtype=bool))


def grouped_median(
    scan: Scan,
    strata: Sequence[str],
    features: Features,
    *,
    values_per_pass: int = MEDIAN_VALUES_PER_PASS,
    pool: object | None = None,
) -> Grouped:
    """Exact medians as pandas' `groupby().median()` (NaN and NULL skipped, an even count
    averages the two middle values in float64, a group with no value gives NaN).

    One streaming pass when each group's rows arrive as one run; otherwise a pass over the
    keys, then passes over feature slices of about `values_per_pass` values, each row
    placed by the keys streamed beside it (so the source need not keep its row order).
    """
    columns = [*strata, *features.names]
    try:
        return grouped_median_runs(scan(columns), strata, features, pool=pool)
    except NotRuns:
        pass
    return _median_by_passes(scan, strata, features, values_per_pass)


def _median_by_passes(
    scan: Scan, strata: Sequence[str], features: Features, values_per_pass: int
) -> Grouped:
    """A pass over the keys, then one pass per slice of features into a (k, n_rows) block."""
    codes_of = GroupCodes(strata)
    counted = np.zeros(0, dtype=np.int64)
    for batch in scan(list(strata)):
        codes = codes_of.encode(batch)
        counted = np.r_[counted, np.zeros(len(codes_of.keys) - len(counted), np.int64)]
        counted += np.bincount(codes, minlength=len(counted))
    groups, order = codes_of.sorted_groups()
    sizes = counted[order]  # rows per sorted group
    stops = np.cumsum(sizes)
    starts = stops - sizes
    start_of_code = np.empty(len(order), dtype=np.int64)
    start_of_code[order] = starts
    n_rows = int(sizes.sum())
    step = max(1, values_per_pass // max(n_rows, 1))
    width = None if features.vector is not None else len(features.columns)
    parts: list[np.ndarray] = []
    block: np.ndarray | None = None
    first = 0
    while width is None or first < width:
        last = first + step if width is None else min(first + step, width)
        names = features.names if features.vector is not None else features.columns[first:last]
        filled = np.zeros(len(order), dtype=np.int64)
        for batch in scan([*strata, *names]):
            check_features(batch.schema, features if features.vector else Features(tuple(names)))
            if features.vector is not None:
                matrix, _ = vector_matrix(batch.column(features.vector), features.vector)
                if width is None:
                    width = matrix.shape[1]
                    last = min(last, width)
                chunk = matrix[:, first:last].T  # (k, n)
            else:
                columns = [_as_float(batch.column(name)) for name in names]
                chunk = np.stack(columns).astype(np.result_type(*columns), copy=False)
            if block is None or block.dtype != chunk.dtype or block.shape[0] < last - first:
                block = np.empty((min(step, width), n_rows), dtype=chunk.dtype)
            codes = codes_of.encode(batch)
            if len(codes_of.keys) != len(order):
                raise ValueError("the source returned other groups in a later scan")
            # Each row goes after the rows of its group already placed in this pass.
            by_code = np.argsort(codes, kind="stable")
            sorted_codes = codes[by_code]
            run_starts, run_stops = _runs(sorted_codes)
            rank = np.arange(len(codes)) - np.repeat(run_starts, run_stops - run_starts)
            positions = np.empty(len(codes), dtype=np.int64)
            positions[by_code] = start_of_code[sorted_codes] + filled[sorted_codes] + rank
            filled += np.bincount(codes, minlength=len(filled))
            if (filled > counted).any():
                raise ValueError("the source returned more rows in a later scan")
            block[: last - first, positions] = chunk
        if width is None:  # a vector source without rows
            width = 0
            break
        if (filled != counted).any():
            raise ValueError("the source returned fewer rows in a later scan")
        assert block is not None
        layout = GroupLayout(groups, None, starts, stops)
        parts.append(grouped_median_block(block[: last - first], layout))
        first = last
    values = np.hstack(parts) if parts else np.zeros((len(order), width or 0))
    return Grouped(groups, sizes, values, np.zeros(values.shape, dtype=bool))
