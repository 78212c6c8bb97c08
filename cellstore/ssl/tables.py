"""The SimCLR stages' tables: train on crop files → checkpoints + log; crops → embeddings.

Arrow in, Arrow (or Parquet files) out; nothing here imports the engine. `stages/simclr.py`
and `stages/embeddings.py` are thin wrappers around these two functions.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from cellstore.ssl.data import CropFile, decode_crops
from cellstore.ssl.embed import embed
from cellstore.ssl.train import load_model, resolve_config, train_processes

log = logging.getLogger(__name__)

INITIAL, FINAL = "initial.pt", "last.pt"
# feature-source names of the embeddings: the trained encoder and its untrained control
TRAINED, UNTRAINED = "simclr", "simclr_untrained"
LOG_COLUMNS = {
    "epoch": pa.int32(),
    "loss": pa.float64(),
    "lr": pa.float64(),
    "cells_per_s": pa.float64(),
    "seconds": pa.float64(),
    "peak_device_memory_bytes": pa.int64(),
    "memory_measure": pa.string(),
    "device": pa.string(),
    "processes": pa.int32(),
    "pos_top1": pa.float64(),
    "steps": pa.int32(),
    "cells": pa.int64(),
}
EMBEDDING_META = ("cell_id", "image_id", "plate", "well")


def train_stage(
    files: Sequence[tuple[str, int]],
    folder: Path,
    *,
    preset: str = "demo",
    device: str = "auto",
    devices: int = 1,
    seed: int = 0,
    resume: bool = False,
    progress: Callable[..., None] | None = None,
    scratch: Path | None = None,
    **overrides: Any,
) -> dict[str, pa.Table]:
    """Train into `folder` (resuming from its checkpoints) → {simclr, training_log} tables.

    files: the crops table's Parquet files as (path, rows). simclr: one row per checkpoint
    a downstream stage needs (initial = untrained weights, final = the last epoch).
    scratch: a folder for the training set in canonical order (see `canonical_crops`);
    None trains on `files` as they are laid out.
    """
    if not files or sum(int(rows) for _, rows in files) == 0:
        raise ValueError(
            "simclr: the crops table is empty, nothing to train on "
            "(see crops_rejected and nuclei_rejected for why)"
        )
    if devices < 1:
        raise ValueError(f"simclr: devices must be >= 1, got {devices}")
    config = resolve_config(preset, seed=seed, **overrides)  # unknown names fail here, early
    if scratch is not None:
        crop_files = [canonical_crops([path for path, _ in files], Path(scratch))]
    else:
        crop_files = [CropFile(str(path), int(rows)) for path, rows in files]
    if resume:
        log.info("simclr: resuming from the checkpoints in %s", folder)
    on_epoch = None
    if progress is not None:
        progress(0, total=config.epochs)
        if devices == 1:  # a callback cannot cross into spawned DDP processes

            def on_epoch(row: dict[str, Any]) -> None:
                progress(1)

    rows = train_processes(
        devices,
        crop_files,
        folder,
        preset=preset,
        device=device,
        seed=seed,
        on_epoch=on_epoch,
        **overrides,
    )
    return {"simclr": checkpoints_table(folder, rows), "training_log": log_table(rows)}


CANONICAL_ROW_GROUP = 2048


def canonical_crops(paths: Sequence[str], scratch: Path) -> CropFile:
    """The crops of `paths` rewritten as one Parquet file sorted by cell_id, in row groups
    of CANONICAL_ROW_GROUP rows.

    The shuffle, the training subset and the normalisation statistics follow the files'
    row groups, and a table's physical row order is not part of its content: two builds of
    one source commit the same crops in different orders (measured: the crash suite's
    rebuilds trained other weights than the reference). Training on this copy makes the
    weights a function of the table's content (and the seed) only. DuckDB sorts with
    bounded memory (it spills to `scratch`); pyarrow writes fixed row groups.
    """
    import duckdb

    scratch.mkdir(parents=True, exist_ok=True)
    out = scratch / "simclr_training_set.parquet"
    listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
    con = duckdb.connect()
    try:
        con.execute("set memory_limit = '1GB'")
        con.execute(f"set temp_directory = '{scratch / 'duckdb_tmp'}'")
        con.execute("set preserve_insertion_order = true")
        reader = con.sql(
            f"select cell_id, crop, shape, dtype from read_parquet([{listed}]) order by cell_id"
        ).fetch_record_batch(CANONICAL_ROW_GROUP)
        rows, pending = 0, []
        with pq.ParquetWriter(out, reader.schema, compression="zstd") as writer:
            # row groups of exactly CANONICAL_ROW_GROUP rows, whatever batches DuckDB yields
            for batch in itertools.chain(reader, [None]):  # None: flush the rest
                if batch is not None:
                    pending.append(batch)
                held = pa.Table.from_batches(pending, schema=reader.schema)
                cut = (
                    held.num_rows
                    if batch is None
                    else held.num_rows // CANONICAL_ROW_GROUP * CANONICAL_ROW_GROUP
                )
                if cut:
                    writer.write_table(held.slice(0, cut), row_group_size=CANONICAL_ROW_GROUP)
                    rows += cut
                    pending = held.slice(cut).to_batches()
    finally:
        con.close()
    return CropFile(str(out), rows)


def log_table(rows: list[dict[str, Any]]) -> pa.Table:
    """The training log, one row per epoch, with fixed column types."""
    return pa.table(
        {name: pa.array([row[name] for row in rows], type) for name, type in LOG_COLUMNS.items()}
    )


def checkpoints_table(folder: Path, rows: list[dict[str, Any]]) -> pa.Table:
    """initial and final checkpoints with what an embedding needs to know about them."""
    records = []
    for role, name in (("initial", INITIAL), ("final", FINAL)):
        state = torch.load(folder / name, map_location="cpu", weights_only=False)
        config = state["config"]
        records.append(
            {
                "checkpoint": role,
                "file": name,
                "epoch": int(state["epoch"]),
                "encoder": config["encoder"],
                "size": int(config["size"]),
                "batch_size": int(config["batch_size"]),
                "epochs": int(config["epochs"]),
                "temperature": float(config["temperature"]),
                "seed": int(config["seed"]),
                "cells_per_epoch": int(rows[-1]["cells"]),
                "mean": [float(v) for v in config["mean"]],
                "std": [float(v) for v in config["std"]],
            }
        )
    return pa.Table.from_pylist(
        records,
        schema=pa.schema(
            [
                ("checkpoint", pa.string()),
                ("file", pa.string()),
                ("epoch", pa.int32()),
                ("encoder", pa.string()),
                ("size", pa.int32()),
                ("batch_size", pa.int32()),
                ("epochs", pa.int32()),
                ("temperature", pa.float64()),
                ("seed", pa.int64()),
                ("cells_per_epoch", pa.int64()),
                ("mean", pa.list_(pa.float32())),
                ("std", pa.list_(pa.float32())),
            ]
        ),
    )


def embeddings_schema() -> pa.Schema:
    return pa.schema(
        [
            ("cell_id", pa.string()),
            ("image_id", pa.string()),
            ("plate", pa.string()),
            ("well", pa.string()),
            ("model", pa.string()),
            ("simclr_run", pa.string()),
            ("embedding", pa.list_(pa.float32())),
        ]
    )


def embed_stage(
    batches: Iterable[pa.RecordBatch],
    artifact: Path,
    out: Path,
    *,
    device: str = "auto",
    batch_size: int = 512,
    progress: Callable[..., None] | None = None,
) -> Path | None:
    """Embed every crop of `batches` with the final and the initial encoder of `artifact`
    (a published simclr folder) and write one Parquet file at `out` (None if no row).

    batches: record batches with cell_id, image_id, plate, well, crop, shape, dtype.
    Output rows: per crop, one with model "simclr" and one with "simclr_untrained"; h as
    FLOAT[] (the encoder's pooled feature, no projection head, no augmentation).
    """
    artifact = Path(artifact)
    models = []
    for name, file in ((TRAINED, FINAL), (UNTRAINED, INITIAL)):
        model, config = load_model(artifact / file)
        models.append((name, model, config))
    config = models[0][2]
    size, mean, std = int(config["size"]), config["mean"], config["std"]
    trained_shape = tuple(config.get("crop_shape") or ())
    run = artifact.name
    writer: pq.ParquetWriter | None = None
    said_resize = False
    try:
        for batch, crops, chunks in crop_chunks(batches, batch_size):
            n = batch.num_rows
            if not said_resize and crops.shape[2:] != (size, size):
                log.info(
                    "embeddings: crops are %s px (trained on %s); resized to %d px",
                    "×".join(map(str, crops.shape[2:])),
                    "×".join(map(str, trained_shape[1:])) or "?",
                    size,
                )
                said_resize = True
            meta = {c: batch.column(c).cast(pa.string()) for c in EMBEDDING_META}
            for name, model, _ in models:
                h = embed(model, chunks, size, mean, std, device)  # (n, d) float32
                table = pa.table(
                    {
                        **meta,
                        "model": pa.array([name] * n, pa.string()),
                        "simclr_run": pa.array([run] * n, pa.string()),
                        "embedding": vectors(h),
                    },
                    schema=embeddings_schema(),
                )
                if writer is None:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    writer = pq.ParquetWriter(out, embeddings_schema(), compression="zstd")
                writer.write_table(table, row_group_size=64 * 1024)
            if progress is not None:
                progress(n)
    finally:
        if writer is not None:
            writer.close()
    return out if writer is not None else None


def crop_chunks(
    batches: Iterable[pa.RecordBatch], batch_size: int
) -> Iterator[tuple[pa.RecordBatch, np.ndarray, list[torch.Tensor]]]:
    """Each non-empty record batch of the crops table with its decoded crops (n, C, H, W)
    and those as uint8 tensors of at most batch_size crops, for `embed`.

    The tensors are copies: the decoded crops are a read-only view on the Arrow buffer.
    """
    first_row = 0
    for batch in batches:
        n = batch.num_rows
        if n == 0:
            continue
        shape = tuple(int(s) for s in batch.column("shape")[0].as_py())
        crops = decode_crops(batch, shape, "crops", first_row)  # (n, C, H, W) uint8
        first_row += n
        chunks = [
            torch.from_numpy(crops[i : i + batch_size].copy()) for i in range(0, n, batch_size)
        ]
        yield batch, crops, chunks


def vectors(h: np.ndarray) -> pa.Array:
    """(n, d) float32 → list<float> (DuckDB FLOAT[]) without a Python step per row."""
    n, d = h.shape
    values = pa.array(np.ascontiguousarray(h, np.float32).ravel())
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values)
