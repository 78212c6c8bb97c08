"""Operating a warehouse: gc during a build, a bare catalog, read-only and full disks, damaged
files and scratch of killed builds (issue 14)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import one_error_line

from cellstore.engine.warehouse import LAKE, META_SCHEMA, Warehouse, offline_connection

BIG = 20_000  # rows: enough that DuckLake writes a Parquet file instead of inlining them


def data_files(warehouse: Path) -> list[Path]:
    return sorted((warehouse / "data").rglob("*.parquet"))


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def wait_for(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, what
        time.sleep(0.05)


@contextlib.contextmanager
def mounted(target: Path, *args: str):
    """`mount ARGS TARGET` for the block (skips the test where mounting is not allowed)."""
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here ({proc.stderr.strip()})")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


GATED_STAGE = """
import pathlib, time
import pyarrow as pa
from cellstore.stage import stage

GATE = pathlib.Path({gate!r})

@stage(outputs=["numbers", "slow"])
def numbers(*, n: int = {big}):
    schema = pa.schema([("j", pa.int64())])

    def batches():
        yield pa.record_batch([pa.array(range(10))], schema=schema)
        # `numbers` is written (an uncommitted Parquet file); hold the transaction open
        GATE.write_text("running")
        while GATE.read_text() != "go":
            time.sleep(0.05)
        yield pa.record_batch([pa.array(range(10, 20))], schema=schema)

    return {{
        "numbers": pa.table({{"i": list(range(n))}}),
        "slow": pa.RecordBatchReader.from_batches(schema, batches()),
    }}
"""


def test_gc_refuses_while_a_build_has_uncommitted_files(toy, tmp_path):
    """Fix 1: gc during a build used to delete the file the build was about to commit."""
    gate = tmp_path / "gate"
    toy.py("numbers", GATED_STAGE.format(gate=str(gate), big=BIG))
    writer = subprocess.Popen(
        [sys.executable, "-m", "cellstore", "build"],
        cwd=toy.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: gate.exists() and gate.read_text() == "running", "stage never ran")
        uncommitted = data_files(toy.warehouse_dir)
        assert uncommitted, "the open transaction should have written numbers' Parquet file"
        refused = toy.cli("gc")
        line = one_error_line(refused)
        assert "another build is running" in line and "--wait" in line, line
        waited = toy.cli("gc", "--wait", "0.5")
        assert "waiting up to 0.5 s" in waited.stdout
        assert "another build is running" in one_error_line(waited)
        assert data_files(toy.warehouse_dir) == uncommitted
        gate.write_text("go")
        assert writer.wait(timeout=120) == 0, writer.stderr.read()
    finally:
        gate.write_text("go")
        writer.kill()
        writer.wait()
    assert toy.query("select count(*) from numbers") == [(BIG,)]
    toy.cli("verify", check=True)
    assert "orphaned files deleted: 0" in toy.cli("gc", check=True).stdout


def test_gc_waits_for_a_running_build_then_runs(toy, tmp_path):
    gate = tmp_path / "gate"
    toy.py("numbers", GATED_STAGE.format(gate=str(gate), big=BIG))
    writer = subprocess.Popen([sys.executable, "-m", "cellstore", "build"], cwd=toy.root)
    try:
        wait_for(lambda: gate.exists() and gate.read_text() == "running", "stage never ran")
        gc = subprocess.Popen(
            [sys.executable, "-m", "cellstore", "gc", "--wait", "120"],
            cwd=toy.root,
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)
        assert gc.poll() is None, "gc must wait while the build holds the lock"
        gate.write_text("go")
        out, _ = gc.communicate(timeout=120)
        assert gc.returncode == 0 and "orphaned files deleted: 0" in out, out
        assert writer.wait(timeout=120) == 0
    finally:
        gate.write_text("go")
        writer.kill()
        writer.wait()
    toy.cli("verify", check=True)


def bare_catalog(root: Path) -> None:
    """A DuckLake catalog with nothing else in it: what a build killed in its first second
    leaves (or a catalog made by another tool)."""
    from cellstore.engine.warehouse import _extension_path

    root.mkdir(parents=True)
    con = offline_connection()
    con.execute(f"load '{_extension_path('duckdb_extension_ducklake', 'ducklake')}'")
    con.execute(f"load '{_extension_path('duckdb_extension_sqlite_scanner', 'sqlite_scanner')}'")
    con.execute(
        f"attach 'ducklake:sqlite:{root / 'catalog.sqlite'}' as l (data_path '{root / 'data'}/')"
    )
    con.close()


def test_bare_catalog_is_readable_and_buildable(toy):
    """Fix 2: `ls` and `history` used to fail on "cellstore_meta.runs does not exist"."""
    bare_catalog(toy.warehouse_dir)
    listed = toy.cli("ls")
    no_traceback(listed)
    assert listed.returncode == 0
    assert "no runs recorded" in one_error_line(toy.cli("history", "numbers"))
    plan = toy.cli("build", "--dry-run")
    assert plan.returncode == 0 and "never built" in plan.stdout, plan.stdout + plan.stderr
    toy.cli("build", check=True)
    assert toy.query("select total from total") == [(20,)]


def test_metadata_is_created_in_one_snapshot(tmp_path, monkeypatch):
    """Fix 2: schema, table and view commit together, so a failure (or kill) between them
    leaves none of them."""
    import cellstore.engine.warehouse as warehouse

    monkeypatch.setattr(warehouse, "STAGE_RUNS_VIEW", "create view broken as select * from nope")
    wh = Warehouse(tmp_path / "wh")
    with pytest.raises(Exception, match="nope"):
        wh.connect()
    con = wh.connect(read_only=True)
    schemas = con.execute(
        f"select schema_name from duckdb_schemas() where database_name = '{LAKE}'"
    ).fetchall()
    assert (META_SCHEMA,) not in schemas
    monkeypatch.undo()
    con = wh.connect()
    changes = con.execute(f"select changes from {LAKE}.snapshots() order by snapshot_id").fetchall()
    created = [c[0] for c in changes if META_SCHEMA in str(c[0])]
    assert len(created) == 1, changes
    assert created[0]["views_created"] == [f"{META_SCHEMA}.stage_runs"]


@pytest.mark.skipif(os.geteuid() != 0, reason="a read-only bind mount needs root")
def test_read_only_warehouse_is_one_line(toy):
    """Fix 3: a read-only warehouse made `build` print an OSError traceback."""
    toy.cli("build", check=True)
    with mounted(toy.warehouse_dir, "--bind", str(toy.warehouse_dir)):
        remount = subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(toy.warehouse_dir)], capture_output=True
        )
        if remount.returncode != 0:
            pytest.skip("cannot remount read-only here")
        for args in (["build"], ["build", "--select", "numbers"], ["gc"]):
            proc = toy.cli(*args)
            no_traceback(proc)
            assert "is read-only" in one_error_line(proc), args
        reading = toy.cli("sql", "select count(*) as n from numbers", "-f", "csv", check=True)
        assert reading.stdout.splitlines() == ["n", "5"]
        toy.cli("verify", check=True)


BIG_STAGE = """
import os
import pyarrow as pa
from cellstore.stage import stage

@stage
def big(numbers, *, mb: int = 40):
    \"\"\"Incompressible blobs, more than the disk holds. Grain: one blob.\"\"\"
    return pa.table({"b": pa.array([os.urandom(2**20) for _ in range(mb)], pa.binary())})
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_fails_in_one_line_and_keeps_the_failed_run(toy, tmp_path):
    """Fix 4: recording the failed run on a full disk used to end in a ROLLBACK traceback."""
    toy.py("big", BIG_STAGE)
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=20m", "tmpfs") as disk:
        warehouse = disk / "wh"
        for _ in range(2):  # the second build starts on a disk the first one filled
            proc = toy.cli("build", "--warehouse", str(warehouse))
            no_traceback(proc)
            assert proc.returncode == 1
            assert proc.stderr.strip().splitlines()[-1].startswith("error: stage big")
            assert "No space left on device" in proc.stderr
            assert "not recorded" not in proc.stderr
        toy.cli("history", "big", "--warehouse", str(warehouse), check=True)
        runs = toy.cli(
            "sql",
            "select count(*) as n from cellstore_meta.runs where stage = 'big' "
            "and status = 'failed' and error like '%No space left on device%'",
            "--warehouse",
            str(warehouse),
            "-f",
            "csv",
            check=True,
        )
        assert runs.stdout.splitlines() == ["n", "2"]


def only_file(warehouse: Path, table: str) -> Path:
    files = sorted((warehouse / "data" / "main" / table).glob("*.parquet"))
    assert len(files) == 1, files
    return files[0]


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_damaged_file_is_found_and_rebuilt(toy, damage):
    """Fix 5: a truncated (or lost) file went unnoticed: `build` said "up to date"."""
    toy.config(f"[stages.numbers]\nn = {BIG}\n")
    toy.cli("build", check=True)
    path = only_file(toy.warehouse_dir, "numbers")
    if damage == "truncate":
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size // 2)
    else:
        path.unlink()
    verify = toy.cli("verify")
    assert verify.returncode == 1
    assert f"damaged: numbers: {path}" in verify.stderr
    assert "repair numbers: cellstore build --full-refresh --select numbers" in verify.stderr
    assert "1 damaged" in verify.stdout
    plan = toy.cli("build", "--dry-run", check=True)
    assert "data file(s) of numbers damaged" in plan.stdout, plan.stdout
    result = toy.build()
    statuses = {r.stage: (r.status, r.reason) for r in result.results}
    assert statuses["numbers"][0] == "built" and "damaged" in statuses["numbers"][1]
    assert statuses["doubled"][0] == "built"  # downstream follows its rebuilt input
    toy.cli("verify", check=True)
    toy.cli("check", check=True)
    assert toy.query("select sum(i) from numbers") == [(BIG * (BIG - 1) // 2,)]


def test_verify_at_an_old_snapshot(toy):
    toy.config(f"[stages.numbers]\nn = {BIG}\n")
    toy.cli("build", check=True)
    old = only_file(toy.warehouse_dir, "numbers")
    snapshot = toy.query("select max(snapshot_id) from lake.snapshots()")[0][0]
    toy.config(f"[stages.numbers]\nn = {BIG + 1}\n")
    toy.cli("build", check=True)
    old.unlink()  # only the old snapshot referenced it
    toy.cli("verify", check=True)
    at = toy.cli("verify", "--at", str(snapshot))
    assert at.returncode == 1 and f"damaged: numbers: {old} missing" in at.stderr


def test_gc_and_build_remove_scratch_of_dead_builds(toy):
    """Fix 6: killed builds left `tmp/<run>/` parts that neither a rebuild nor gc removed."""
    toy.cli("build", check=True)

    def leave_scratch() -> list[Path]:
        part = toy.warehouse_dir / "tmp" / "deadbeef0000-crops" / "part-000001.parquet"
        part.parent.mkdir(parents=True)
        part.write_bytes(b"x" * 4096)
        half = toy.warehouse_dir / "cache" / "demo_source.tmp.abc"
        half.mkdir(parents=True)
        (half / "image.tif").write_bytes(b"y" * 1024)
        return [part.parent, half]

    left = leave_scratch()
    dry = toy.cli("gc", "--dry-run", check=True).stdout
    assert "scratch of finished builds to delete: 2" in dry
    assert all(p.exists() for p in left)
    assert "scratch of finished builds deleted: 2" in toy.cli("gc", check=True).stdout
    assert not any(p.exists() for p in left)
    left = leave_scratch()
    toy.cli("build", check=True)  # holds the lock: whatever is in tmp/ is a dead build's
    assert not any(p.exists() for p in left)


def test_build_says_when_failed_runs_cannot_be_recorded(toy, monkeypatch):
    """Fix 4, last resort: when even the failure record cannot be written, say why."""
    import duckdb

    from cellstore.engine.runner import Runner

    toy.sql("doubled", "select i, cast('x' || i as integer) as twice from numbers\n")
    insert = Runner._insert_run

    def failing_insert(self, con, record):
        if record["status"] != "built":
            raise duckdb.IOException("IO Error: No space left on device")
        insert(self, con, record)

    monkeypatch.setattr(Runner, "_insert_run", failing_insert)
    result = toy.build()
    assert result.first_failure().stage == "doubled"
    assert result.unrecorded == "IOException: IO Error: No space left on device"
