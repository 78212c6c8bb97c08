"""Stream crops from the crops table's Parquet files as uint8 batches, shuffled in bounded RAM."""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

COLUMNS = ["crop", "shape", "dtype"]


@dataclass(frozen=True)
class CropFile:
    """One Parquet data file of the crops table; rows=None reads the count from its footer."""

    path: str
    rows: int | None = None


@dataclass(frozen=True)
class Piece:
    """Rows of one row group to read: `rows` are indices inside the row group (sorted)."""

    file: int
    row_group: int
    first_row: int  # the row group's first row within its file
    rows: np.ndarray


def decode_crops(batch: pa.RecordBatch, shape: tuple[int, ...], where: str, first_row: int) -> Any:
    """(N, *shape) uint8 view on a record batch's crop bytes, without a Python step per crop.

    Checks every row's shape, dtype and byte length against `shape`; an odd row is an error
    naming `where` (the file) and its row number (first_row + index in the batch).
    """
    n = batch.num_rows
    crops, shapes, dtypes = (batch.column(name) for name in COLUMNS)
    if crops.null_count or shapes.null_count:
        nulls = crops.is_null().to_numpy(zero_copy_only=False)
        nulls |= shapes.is_null().to_numpy(zero_copy_only=False)
        bad = int(np.flatnonzero(nulls)[0])
        raise ValueError(f"crops: {where} row {first_row + bad} has no crop bytes or no shape")
    bad_dtype = np.flatnonzero(
        pc.fill_null(pc.not_equal(dtypes, "uint8"), True).to_numpy(zero_copy_only=False)
    )
    if len(bad_dtype):
        row = int(bad_dtype[0])
        raise ValueError(
            f"crops: {where} row {first_row + row} has dtype {dtypes[row].as_py()!r}, "
            "expected 'uint8'"
        )
    lengths = shapes.value_lengths().to_numpy(zero_copy_only=False)
    odd = np.flatnonzero(lengths != len(shape))
    if not len(odd):
        values = shapes.flatten().to_numpy(zero_copy_only=False).reshape(n, len(shape))
        odd = np.flatnonzero((values != np.asarray(shape)).any(axis=1))
    if len(odd):
        row = int(odd[0])
        raise ValueError(
            f"crops: {where} row {first_row + row} has shape {shapes[row].as_py()}, expected "
            f"{list(shape)} (every crop of a training set must have one shape)"
        )
    width = 4 if crops.type == pa.binary() else 8
    offsets = np.frombuffer(crops.buffers()[1], np.int32 if width == 4 else np.int64)
    offsets = offsets[crops.offset : crops.offset + n + 1]
    size = math.prod(shape)
    lengths = np.diff(offsets)
    if (lengths != size).any():
        row = int(np.flatnonzero(lengths != size)[0])
        raise ValueError(
            f"crops: {where} row {first_row + row} holds {lengths[row]} bytes, expected {size} "
            f"for shape {list(shape)}"
        )
    data = np.frombuffer(crops.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    return data.reshape((n, *shape))  # (N, C, H, W), a view on the Arrow buffer


def as_crop_files(files: Iterable[CropFile | str | Path | tuple[str, int]]) -> list[CropFile]:
    """Normalise paths, (path, rows) pairs or CropFiles to CropFiles."""
    out = []
    for f in files:
        if isinstance(f, CropFile):
            out.append(f)
        elif isinstance(f, tuple):
            out.append(CropFile(str(f[0]), int(f[1])))
        else:
            out.append(CropFile(str(f)))
    return out


class CropStream:
    """uint8 crop batches (B, C, H, W) from Parquet files, one epoch at a time.

    Shuffling (shuffle=True) mixes the whole table with bounded host memory: each epoch
    permutes the row groups, reads them in slices of at most buffer_rows // 4 rows, and draws
    every batch at random from a shuffle buffer of at most `buffer_rows` crops (or
    buffer_bytes // crop bytes). The order is a pure function of (seed, epoch, rank).
    shuffle=False yields table order (files, then rows), e.g. for embedding.

    max_cells: train on a random subset of that many rows, fixed by `seed` for every epoch.
    Sharding for DDP: the epoch's row sequence is cut into world_size equal contiguous parts
    (T // world_size rows each; the T mod world_size rows left over, fewer than world_size,
    are skipped that epoch), so ranks see disjoint rows and run the same number of steps.
    drop_last=True drops each rank's final partial batch.
    """

    def __init__(
        self,
        files: Sequence[CropFile | str | Path | tuple[str, int]],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        buffer_rows: int | None = None,
        buffer_bytes: int = 256 * 2**20,
        max_cells: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        self.files = as_crop_files(files)
        if not self.files:
            raise ValueError("crops: no Parquet files given (is the crops table empty?)")
        if batch_size < 1:
            raise ValueError(f"crops: batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"crops: rank {rank} outside world_size {world_size}")
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.row_groups = self._row_groups()  # [(file, row_group, first_row, n_rows)]
        self.total_rows = sum(n for *_, n in self.row_groups)
        if self.total_rows == 0:
            raise ValueError(f"crops: the {len(self.files)} file(s) hold zero rows")
        self.shape = self._first_shape()
        self.crop_bytes = math.prod(self.shape)
        capacity = buffer_rows if buffer_rows is not None else buffer_bytes // self.crop_bytes
        if shuffle and capacity < 2 * batch_size:
            raise ValueError(
                f"crops: the shuffle buffer holds {capacity} crops; it needs at least "
                f"2 × batch_size = {2 * batch_size} (raise buffer_bytes or buffer_rows)"
            )
        self.buffer_rows = int(capacity)
        self.read_rows = max(1, self.buffer_rows // 4)
        self.keep = self._subset(max_cells)  # per row group: kept row indices
        self.n_cells = sum(len(k) for k in self.keep)
        self.rows_per_rank = self.n_cells // world_size if world_size > 1 else self.n_cells
        self.peak_buffered_rows = 0  # most crops held at once (buffer + slice being read)

    def _row_groups(self) -> list[tuple[int, int, int, int]]:
        groups = []
        for i, f in enumerate(self.files):
            if not Path(f.path).is_file():
                raise FileNotFoundError(f"crops: no such Parquet file {f.path}")
            meta = pq.ParquetFile(f.path).metadata
            if f.rows is not None and f.rows != meta.num_rows:
                raise ValueError(
                    f"crops: {f.path} holds {meta.num_rows} rows, the catalog says {f.rows}"
                )
            first = 0
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                if n:
                    groups.append((i, g, first, n))
                first += n
        return groups

    def _first_shape(self) -> tuple[int, ...]:
        file, group, _, _ = self.row_groups[0]
        table = pq.ParquetFile(self.files[file].path).read_row_group(group, columns=["shape"])
        shape = table["shape"][0].as_py()
        if not shape:
            raise ValueError(f"crops: {self.files[file].path} row 0 has no shape")
        return tuple(int(s) for s in shape)

    def _subset(self, max_cells: int | None) -> list[np.ndarray]:
        """Kept row indices per row group: all, or a random max_cells rows fixed by seed."""
        sizes = [n for *_, n in self.row_groups]
        if max_cells is None or max_cells >= self.total_rows:
            return [np.arange(n) for n in sizes]
        if max_cells < 1:
            raise ValueError(f"crops: max_cells must be >= 1, got {max_cells}")
        rng = np.random.default_rng([self.seed, 0x5E7])  # not the epoch: one subset per run
        chosen = np.sort(rng.choice(self.total_rows, size=max_cells, replace=False))
        bounds = np.cumsum([0, *sizes])
        cut = np.searchsorted(chosen, bounds)
        return [chosen[cut[i] : cut[i + 1]] - bounds[i] for i in range(len(sizes))]

    def steps_per_epoch(self) -> int:
        """Batches each rank yields per epoch (the same on every rank)."""
        if self.drop_last:
            return self.rows_per_rank // self.batch_size
        return math.ceil(self.rows_per_rank / self.batch_size)

    def plan(self, epoch: int) -> list[Piece]:
        """This rank's pieces for an epoch: row groups permuted by (seed, epoch), then cut."""
        order = np.arange(len(self.row_groups))
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(order)
        start = self.rank * self.rows_per_rank
        stop = start + self.rows_per_rank
        pieces, offset = [], 0  # offset: kept rows before this row group in the epoch order
        for g in order:
            rows = self.keep[g]
            lo, hi = max(start - offset, 0), min(stop - offset, len(rows))
            if lo < hi:
                file, group, first, _ = self.row_groups[g]
                pieces.append(Piece(file, group, first, rows[lo:hi]))
            offset += len(rows)
            if offset >= stop:
                break
        return pieces

    def _slices(self, pieces: list[Piece]) -> Iterator[np.ndarray]:
        """Decoded crops (n, C, H, W) of the planned rows, at most read_rows per slice."""
        for piece in pieces:
            f = self.files[piece.file]
            reader = pq.ParquetFile(f.path)
            start = 0
            for batch in reader.iter_batches(
                batch_size=self.read_rows, row_groups=[piece.row_group], columns=COLUMNS
            ):
                stop = start + batch.num_rows
                lo, hi = np.searchsorted(piece.rows, [start, stop])
                if lo < hi:
                    crops = decode_crops(batch, self.shape, f.path, piece.first_row + start)
                    yield crops[piece.rows[lo:hi] - start]  # a copy: the Arrow slice is freed
                start = stop

    def epoch(self, epoch: int) -> Iterator[torch.Tensor]:
        """This rank's batches of one epoch: uint8 tensors (B, C, H, W)."""
        steps = self.steps_per_epoch()
        batches = self._shuffled(epoch) if self.shuffle else self._ordered(epoch)
        for _, batch in zip(range(steps), batches, strict=False):
            yield torch.from_numpy(batch)

    def _ordered(self, epoch: int) -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        held = 0
        for crops in self._slices(self.plan(epoch)):
            pending.append(crops)
            held += len(crops)
            self.peak_buffered_rows = max(self.peak_buffered_rows, held)
            if held >= self.batch_size:
                rows = np.concatenate(pending)
                cut = len(rows) - len(rows) % self.batch_size
                yield from np.split(rows[:cut], cut // self.batch_size)
                pending, held = [rows[cut:]], len(rows) - cut
        if held:
            yield np.concatenate(pending)

    def _shuffled(self, epoch: int) -> Iterator[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch, self.rank, 1])
        rows = min(self.buffer_rows, self.rows_per_rank)  # a small table needs no more
        buffer = np.empty((rows, *self.shape), np.uint8)  # (≤ capacity, C, H, W)
        held = 0
        for crops in self._slices(self.plan(epoch)):
            m = len(crops)
            # held + m <= capacity: emitting kept held <= capacity - read_rows
            buffer[held : held + m] = crops
            held += m
            self.peak_buffered_rows = max(self.peak_buffered_rows, held)
            while held > self.buffer_rows - self.read_rows and held >= self.batch_size:
                yield self._draw(buffer, held, rng)
                held -= self.batch_size
        order = rng.permutation(held)
        for i in range(0, held, self.batch_size):
            yield buffer[order[i : i + self.batch_size]]

    def _draw(self, buffer: np.ndarray, held: int, rng: np.random.Generator) -> np.ndarray:
        """Take batch_size random rows out of buffer[:held]; the tail fills the holes (O(B))."""
        b = self.batch_size
        picked = rng.choice(held, size=b, replace=False)
        batch = buffer[picked]  # (B, C, H, W) copy
        tail = np.arange(held - b, held)
        holes = picked[picked < held - b]
        movers = np.setdiff1d(tail, picked, assume_unique=True)
        buffer[holes] = buffer[movers]
        return batch


def prefetch(batches: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate `batches` in a background thread, `depth` items ahead (Parquet reads and numpy
    gathers release the GIL, so reading overlaps the training step)."""
    if depth < 1:
        yield from batches
        return
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in batches:
                if stop.is_set():
                    return
                items.put(item)
            items.put(done)
        except BaseException as exc:  # re-raised in the consumer
            items.put(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def write_crop_file(
    path: str | Path,
    crops: np.ndarray,
    *,
    row_group_size: int = 4096,
    first_cell: int = 0,
    plate: str = "P1",
) -> CropFile:
    """Write uint8 crops (N, C, H, W) as one Parquet file with the crops table's columns.

    For benchmarks and tests that need a crops table without running the image stages;
    cell ids are first_cell + row index.
    """
    from cellstore.imaging.crops import binary_column

    crops = np.ascontiguousarray(crops, dtype=np.uint8)
    n = len(crops)
    ids = np.arange(first_cell, first_cell + n)
    shape = pa.array([list(crops.shape[1:])] * n, pa.list_(pa.int32()))
    table = pa.table(
        {
            "image_id": pa.array(ids // 100, pa.int64()),
            "cell_id": pa.array(ids, pa.int64()),
            "object_number": pa.array(ids % 100 + 1, pa.int32()),
            "plate": pa.array([plate] * n),
            "well": pa.array(["A01"] * n),
            "x": pa.array(np.zeros(n), pa.float64()),
            "y": pa.array(np.zeros(n), pa.float64()),
            "is_border": pa.array(np.zeros(n, bool)),
            "crop": binary_column(crops) if n else pa.array([], pa.binary()),
            "shape": shape,
            "dtype": pa.array(["uint8"] * n),
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return CropFile(str(path), n)
