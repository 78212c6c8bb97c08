"""The driver: every row reaches exactly one task, with its own plate's illumination."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from cellstore.imaging.driver import run_field_tasks
from cellstore.imaging.parts import TaskResult, rejected_schema
from cellstore.parallel import TaskPool


def _tables(n_plates: int, n_fields: int, n_cells: int) -> tuple[pa.Table, pa.Table, pa.Table]:
    images, nuclei, illumination = [], [], []
    for p in range(n_plates):
        plate = f"Week{p + 1}_P{p}"
        for f in range(n_fields):
            image_id = f"{plate}_B{f:02d}_s1"
            paths = {
                f"path_{c}": f"/nowhere/{image_id}_{c}.tif" for c in ("dapi", "tubulin", "actin")
            }
            images.append(
                {
                    "image_id": image_id,
                    "plate": plate,
                    "well": f"B{f:02d}",
                    **paths,
                    "width": 64,
                    "height": 48,
                }
            )
            nuclei += [
                {
                    "image_id": image_id,
                    "plate": plate,
                    "cell_id": f"{image_id}_{k + 1}",
                    "object_number": k + 1,
                    "x": 1.0,
                    "y": 2.0,
                }
                for k in range(0 if f % 10 == 9 else n_cells)  # every 10th field: no nucleus
            ]
        for channel in ("dapi", "tubulin", "actin"):
            function = np.full((12, 16), p + 1, np.float32)
            illumination.append(
                {
                    "plate": plate,
                    "channel": channel,
                    "function": function.tobytes(),
                    "shape": [12, 16],
                    "dtype": "float32",
                    "intensity_low": 0.0,
                    "intensity_high": 100.0 * (p + 1),
                }
            )
    return (
        pa.Table.from_pylist(images),
        pa.Table.from_pylist(nuclei),
        pa.Table.from_pylist(illumination),
    )


def _count_rows(batch, plate, settings, path) -> TaskResult:
    """A stand-in task: checks the batch is one plate's, with that plate's illumination."""
    assert set(batch["plate"].to_pylist()) == {plate.plate}
    assert plate.limits["dapi"][1] == 100.0 * (int(plate.plate[-1]) + 1)
    n_fields = len(set(batch["image_id"].to_pylist()))
    assert n_fields <= settings
    return TaskResult(None, n_fields, batch.num_rows, plate=plate.plate)


def test_every_row_of_a_large_join_reaches_one_task(tmp_path):
    images, nuclei, illumination = _tables(n_plates=3, n_fields=30, n_cells=70)  # 5,670 rows
    con = duckdb.connect()
    for name, table in (("images", images), ("nuclei", nuclei), ("illumination", illumination)):
        con.register(f"{name}_arrow", table)
        con.execute(f"create table {name} as select * from {name}_arrow")
    # Inputs on separate cursors, as the runner hands them over.
    images_rel = con.cursor().table("images")
    nuclei_rel = con.cursor().table("nuclei")
    events = []
    run = run_field_tasks(
        images_rel,
        con.cursor().table("illumination"),
        _count_rows,
        7,  # the stand-in's "settings": the batch size it must respect
        pool=TaskPool("inline"),
        parts_dir=tmp_path,
        prefix="test",
        schema=rejected_schema(),
        centres=nuclei_rel,
        batch_size=7,
        progress=lambda advance, total: events.append((advance, total)),
    )
    assert run.n_rows == 3 * 27 * 70
    assert run.n_fields == 81  # fields with nuclei went to tasks
    assert sum(a for a, _ in events) == 90 and {t for _, t in events} == {90}
    assert len(run.parts) == 1 and run.parts[0].name == "test-empty.parquet"
