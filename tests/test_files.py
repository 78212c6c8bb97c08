"""Inputs as files: a stage receives an upstream table as its committed Parquet files."""

from __future__ import annotations

from conftest import ToyProject

IMAGES = """
import pyarrow as pa
from cellstore.stage import stage

@stage
def images(*, ids: list = ["a", "b", "c"]):
    return pa.table({"image_id": ids})
"""

CELLS = """
import pyarrow as pa
from cellstore.stage import stage

@stage(incremental="image_id")
def cells(images):
    ids = [r[0] for r in images.fetchall()]
    return pa.table({
        "image_id": [i for i in ids for _ in range(3)],
        "cell": [k for _ in ids for k in range(3)],
    })
"""

READER = """
import pyarrow as pa
import pyarrow.parquet as pq
from cellstore.stage import TableFiles, stage

@stage(files=["cells"])
def summary(cells: TableFiles):
    assert isinstance(cells, TableFiles) and cells.table == "cells"
    # What a data-loader worker would do: read the files without DuckDB.
    assert cells.columns == ("image_id", "cell")
    parts = [pq.read_table(path, columns=list(cells.columns)) for path in cells.paths]
    table = pa.concat_tables(parts)
    in_footers = sum(pq.ParquetFile(p).metadata.num_rows for p in cells.paths)
    assert table.num_rows == cells.n_rows == in_footers
    return pa.table({
        "image_id": table["image_id"].to_pylist(),
        "cell": table["cell"].to_pylist(),
        "n_files": [len(cells.files)] * table.num_rows,
        "snapshot_id": [cells.snapshot_id] * table.num_rows,
    })
"""


def test_stage_reads_an_input_as_parquet_files(tmp_path):
    toy = ToyProject(tmp_path / "toy")
    toy.py("images", IMAGES)
    toy.py("cells", CELLS)
    toy.py("summary", READER)
    assert toy.build().ok
    expected = toy.query("select image_id, cell from cells order by all")
    assert toy.query("select image_id, cell from summary order by all") == expected
    # Two incremental runs: one appends a file, one deletes the rows of a vanished image
    # (a DuckLake delete file, which plain Parquet readers would not apply).
    toy.config('[stages.images]\nids = ["a", "b", "c", "d"]\n')
    assert toy.build().ok
    toy.config('[stages.images]\nids = ["b", "c", "d"]\n')
    result = toy.build()
    assert result.ok, result.first_failure()
    expected = toy.query("select image_id, cell from cells order by all")
    assert len(expected) == 9 and ("a", 0) not in expected
    assert toy.query("select image_id, cell from summary order by all") == expected
    # The files handed over are the current ones, with no delete file left.
    listing = toy.query("select data_file, delete_file from ducklake_list_files('lake', 'cells')")
    assert listing and all(delete is None for _, delete in listing)
