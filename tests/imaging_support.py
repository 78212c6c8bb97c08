"""Imaging test helpers: small fields on disk, and the repo's image stages run on DuckDB."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import tifffile

from cellstore.imaging.phantoms import paint_field
from cellstore.stage import Parts, StageContext

REPO = Path(__file__).resolve().parents[1]
IMAGE_STAGES = ("illumination", "nuclei", "crops", "cell_features")


def write_field(folder: Path, image_id: str, channels: dict[str, np.ndarray]) -> dict[str, str]:
    """Write one field's channel TIFFs; return {path_dapi: ..., path_tubulin: ..., ...}."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, image in channels.items():
        path = folder / f"{image_id}_{name}.tif"
        tifffile.imwrite(path, image)
        paths[f"path_{name}"] = str(path)
    return paths


def images_row(image_id: str, plate: str, paths: dict[str, str], shape: tuple[int, int]) -> dict:
    """A row of the `images` table (the columns the image stages read, plus a few more)."""
    well = image_id.split("_")[1]
    return {
        "image_id": image_id,
        "plate": plate,
        "well": well,
        "site": 1,
        "batch": "Week1",
        "compound": "DMSO",
        "concentration": 0.0,
        **paths,
        "width": shape[1],
        "height": shape[0],
        "dtype": "uint16",
    }


def phantom_source(
    folder: Path, plates: dict[str, int], diameter: float = 10.0, shape=(256, 320)
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Good painted fields: {plate: n_fields}; returns images rows and true centres by id."""
    rows, truth = [], {}
    for p, (plate, n_fields) in enumerate(plates.items()):
        for k in range(n_fields):
            image_id = f"{plate}_B{k + 2:02d}_s1"
            field = paint_field(
                100 * p + k,
                height=shape[0],
                width=shape[1],
                n_cells=25,
                diameter=diameter,
                touching_pairs=2,
                vignetting=0.5,
            )
            paths = write_field(folder / plate, image_id, field.channels)
            rows.append(images_row(image_id, plate, paths, shape))
            truth[image_id] = field.centres
    return rows, truth


def stage_function(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def put(con: duckdb.DuckDBPyConnection, name: str, value: Any) -> None:
    """Store a stage result (Arrow table or Parquet parts) as table `name`, replacing it."""
    if isinstance(value, Parts):
        files = ", ".join(f"'{p}'" for p in value.paths)
        con.execute(f"create or replace table {name} as select * from read_parquet([{files}])")
        return
    con.register("_incoming", value)
    con.execute(f"create or replace table {name} as select * from _incoming")
    con.unregister("_incoming")


def run_stage(
    con: duckdb.DuckDBPyConnection,
    name: str,
    scratch: Path,
    progress: list | None = None,
    **settings: Any,
) -> dict[str, int]:
    """Call stages/<name>.py on the tables of `con` (inline scheduler unless told), store its
    outputs as tables, and return their row counts; progress events go to `progress`."""
    func = stage_function(name)
    spec = func.__cellstore_stage__
    parts = scratch / name
    parts.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(name, None, parts, scratch / "cache", dict(settings), None)
    if progress is not None:
        ctx.progress = lambda advance=1, total=None: progress.append((advance, total))
    cursors = [con.cursor() for _ in spec.inputs]  # one per input, as the runner does
    inputs = [cursor.table(table) for cursor, table in zip(cursors, spec.inputs, strict=True)]
    result = func(*inputs, ctx=ctx, **({"scheduler": "inline"} | settings))
    for cursor in cursors:
        cursor.close()
    outputs = result if isinstance(result, dict) else {name: result}
    for table, value in outputs.items():
        put(con, table, value)
    return {table: con.table(table).count("*").fetchone()[0] for table in outputs}


def images_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows)
