"""`cellstore attach`: a plain DuckDB session (no cellstore import) reads the warehouse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

import cellstore

PLAIN_SESSION = textwrap.dedent(
    """
    import json, sys
    import duckdb

    con = duckdb.connect()
    for statement in open(sys.argv[1]).read().split(";\\n"):
        if statement.strip():
            con.execute(statement)
    accuracy = con.sql("select feature_source, postprocessing, nsc from moa_accuracy").fetchall()
    images_run = con.sql(
        "select snapshot_id from lake.snapshots() "
        "where commit_extra_info->>'stage' = 'images' order by snapshot_id desc limit 1"
    ).fetchone()[0]
    old_images = con.sql(f"select count(*) from images at (version => {images_run})").fetchone()[0]
    try:
        con.sql(f"select count(*) from moa_accuracy at (version => {images_run})").fetchall()
        old_accuracy = "exists"
    except duckdb.CatalogException as exc:
        old_accuracy = str(exc).splitlines()[0]
    try:
        con.execute("create table lake.scratch as select 1 as x")
        write = "allowed"
    except duckdb.Error as exc:
        write = str(exc).splitlines()[0]
    print(json.dumps({
        "accuracy": accuracy, "images_run": images_run, "old_images": old_images,
        "old_accuracy": old_accuracy, "write": write,
        "cellstore_imported": any(m.startswith("cellstore") for m in sys.modules),
    }))
    """
)


def attach_sql(warehouse: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cellstore", "attach", "--warehouse", str(warehouse), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def plain_duckdb(script: str, *args: str, home: Path) -> subprocess.CompletedProcess:
    """A fresh interpreter with an empty HOME: no cached extension, no cellstore on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-I", "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=home,
        env=env,
        timeout=120,
    )


@pytest.fixture(scope="module")
def warehouse(pipeline) -> Path:
    assert pipeline.first.returncode == 0, pipeline.first.stdout + pipeline.first.stderr
    return pipeline.warehouse


def test_printed_sql_attaches_read_only_in_a_plain_duckdb_session(warehouse, tmp_path):
    sql = attach_sql(warehouse)
    assert "autoinstall_known_extensions = false" in sql and "READ_ONLY" in sql
    (tmp_path / "attach.sql").write_text(sql)
    done = plain_duckdb(PLAIN_SESSION, str(tmp_path / "attach.sql"), home=tmp_path)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert not got["cellstore_imported"]
    expected = cellstore.connect(warehouse).sql(
        "select feature_source, postprocessing, nsc from moa_accuracy"
    )
    assert sorted(map(tuple, got["accuracy"])) == sorted(expected.fetchall())
    n_images = cellstore.connect(warehouse).sql("select count(*) from images").fetchone()[0]
    assert got["old_images"] == n_images > 0
    assert "does not exist at version" in got["old_accuracy"]  # really the old snapshot
    assert got["write"] != "allowed" and "read" in got["write"].lower()
    assert not list(tmp_path.glob(".duckdb/extensions/**/*.duckdb_extension"))  # none fetched


def test_python_snippet_and_at_option(warehouse, tmp_path):
    first_images = (
        cellstore.connect(warehouse)
        .sql("select snapshot_id from snapshots() where commit_extra_info->>'stage' = 'images'")
        .fetchone()[0]
    )
    script = attach_sql(warehouse, "--python", "--at", str(first_images))
    assert "import duckdb" in script and "cellstore" not in script.replace(str(warehouse), "")
    done = plain_duckdb(script, home=tmp_path)
    # At that snapshot moa_accuracy was not built yet: the snippet's example query says so.
    assert done.returncode != 0 and "moa_accuracy does not exist" in done.stderr
    done = plain_duckdb(
        script.replace("select * from moa_accuracy", "select count(*) from images"),
        home=tmp_path,
    )
    assert done.returncode == 0, done.stderr


def test_cellstore_connect_is_read_only_and_travels_in_time(warehouse):
    con = cellstore.connect(warehouse)
    assert con.sql("select count(*) from moa_accuracy").fetchone()[0] > 0
    with pytest.raises(Exception, match="read-only|read only"):
        con.execute("create table x as select 1")
    old = cellstore.connect(warehouse, snapshot=5)
    assert old.sql("select count(*) from images").fetchone()[0] > 0  # images: snapshot 5
    with pytest.raises(Exception, match="does not exist"):
        old.sql("select * from moa_accuracy").fetchall()
