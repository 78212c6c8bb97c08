"""Cutting an ordered row stream into per-plate batches of whole fields (driver side)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Indices where a new run of equal consecutive values starts (always includes 0)."""
    if len(values) == 0:
        return np.zeros(0, np.intp)
    return np.flatnonzero(np.r_[True, values[1:] != values[:-1]])


def field_batches(
    record_batches: Iterable[Any], batch_size: int, key: str = "image_id", group: str = "plate"
) -> Iterator[Any]:
    """Regroup record batches, sorted by (`group`, `key`), into pyarrow Tables that each hold
    all rows of at most `batch_size` consecutive `key` values (fields) of a single `group`
    (plate).

    A field's rows may span input record batches; at most one batch of rows is held back.
    Input not sorted by (`group`, `key`) is an error (a field's rows must be contiguous).
    """
    import pyarrow as pa

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    held: pa.Table | None = None
    seen_last: tuple | None = None  # (group, key) of the last field emitted
    for record_batch in record_batches:
        table = pa.Table.from_batches([record_batch])
        held = table if held is None else pa.concat_tables([held, table])
        batches, held = _split(held, batch_size, key, group, final=False)
        for batch in batches:
            seen_last = _check_order(batch, key, group, seen_last)
            yield batch
    if held is not None and held.num_rows:
        batches, _ = _split(held, batch_size, key, group, final=True)
        for batch in batches:
            seen_last = _check_order(batch, key, group, seen_last)
            yield batch


def _check_order(batch: Any, key: str, group: str, seen_last: tuple | None) -> tuple:
    """Fields must arrive in strictly increasing (group, key) order; return the last one."""
    keys = batch[key].to_numpy(zero_copy_only=False)
    groups = batch[group].to_numpy(zero_copy_only=False)
    starts = _run_starts(keys)
    fields = list(zip(groups[starts].tolist(), keys[starts].tolist(), strict=True))
    previous = seen_last
    for current in fields:
        if previous is not None and not previous < current:
            raise ValueError(
                f"field_batches: rows are not sorted by ({group}, {key}): {current!r} came "
                f"after {previous!r}; a field's rows must be contiguous"
            )
        previous = current
    return previous


def _split(table: Any, batch_size: int, key: str, group: str, final: bool) -> tuple[list[Any], Any]:
    """Emit complete batches from `table`; return them and the rows still held back."""
    keys = table[key].to_numpy(zero_copy_only=False)
    groups = table[group].to_numpy(zero_copy_only=False)
    starts = _run_starts(keys)  # first row of each field
    if not final:
        starts_complete = starts[:-1]  # the last field may continue in the next record batch
    else:
        starts_complete = starts
    emitted: list[Any] = []
    begin = 0  # index into starts of the current batch's first field
    n_fields = len(starts_complete)
    for i in range(1, n_fields + 1):
        boundary = i == n_fields or groups[starts[i]] != groups[starts[begin]]
        if i - begin == batch_size or boundary:
            if i == n_fields and not final and i - begin < batch_size:
                break  # a partial batch at the end: wait for more fields of this plate
            stop = starts[i] if i < len(starts) else table.num_rows
            emitted.append(table.slice(starts[begin], stop - starts[begin]))
            begin = i
    rest_start = starts[begin] if begin < len(starts) else table.num_rows
    return emitted, table.slice(rest_start)


def compact(batch: Any) -> Any:
    """A self-contained copy of a batch, for sending to a worker.

    A pyarrow slice pickles with its parent's whole buffers (a 16-field slice of a plate's
    nucleus rows: 5.8 MB and ~18 ms instead of 0.7 MB and ~1 ms); repeated path strings are
    dictionary-encoded on top.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = batch.take(pa.array(np.arange(batch.num_rows)))
    for index, name in enumerate(table.column_names):
        if name.startswith("path_"):
            table = table.set_column(index, name, pc.dictionary_encode(table[name]))
    return table
