"""Many users, one Postgres catalog: builds from different machines (warehouse folders) are
serialised by an advisory lock in the catalog; readers always see a committed snapshot."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ToyProject

from cellstore.engine.catalog_lock import build_lock_holders
from cellstore.engine.warehouse import Warehouse

GATED_STAGE = '''
import time
from pathlib import Path

import pyarrow as pa
from cellstore.stage import stage

@stage
def gated(numbers, *, gate: str = ""):
    """numbers, once the file `gate` exists (the test holds the build here). Grain: i."""
    if gate:
        Path(gate + ".waiting").touch()  # tells the test that `numbers` is committed
    deadline = time.monotonic() + 120
    while gate and not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return numbers.to_arrow_table()
'''


@pytest.fixture
def shared(postgres, toy: ToyProject, tmp_path: Path):
    """The toy project on one Postgres catalog + shared data folder, gated mid-build."""
    dsn = postgres.dsn(postgres.create_database())
    gate = tmp_path / "go"
    toy.py("gated", GATED_STAGE)
    toy.config(
        f"""
        catalog = "postgres:{dsn}"
        data_path = "{tmp_path / "shared-data"}/"

        [stages.gated]
        gate = "{gate}"
        """
    )
    toy.dsn, toy.gate = dsn, gate
    return toy


def cellstore(project: ToyProject, *args: str, machine: str) -> subprocess.Popen:
    """`cellstore` as run by a user on `machine`: its own warehouse folder, same catalog."""
    return subprocess.Popen(
        [sys.executable, "-m", "cellstore", *args]
        + ["--warehouse", str(project.root / f"warehouse-{machine}")],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    return proc.returncode, out, err


def wait_for_lock(dsn: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not build_lock_holders(dsn):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first build never took the lock"
        time.sleep(0.2)


def wait_for_gate(project: ToyProject, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the build holds at `gated`, i.e. every stage before it has committed."""
    waiting = Path(str(project.gate) + ".waiting")
    deadline = time.monotonic() + timeout
    while not waiting.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first build never reached the gated stage"
        time.sleep(0.2)


def query(project: ToyProject, sql: str, machine: str = "reader") -> list[dict]:
    proc = cellstore(project, "sql", sql, "-f", "json", machine=machine)
    code, out, err = finish(proc)
    assert code == 0, err
    return json.loads(out)


def test_two_builds_on_one_catalog_one_runs_one_is_refused(shared: ToyProject):
    first = cellstore(shared, "build", machine="a")
    try:
        wait_for_lock(shared.dsn, first)
        wait_for_gate(shared, first)
        # The other user's build, from another warehouse folder: refused at once, clearly.
        code, out, err = finish(cellstore(shared, "build", machine="b"), timeout=120)
        assert code == 1
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert "another build is running on postgres catalog" in lines[0]
        assert "wait for it to finish" in lines[0] and "password=***" in lines[0]
        # A reader meanwhile sees the committed snapshot: numbers is there, gated is not.
        tables = query(shared, "select table_name from duckdb_tables() order by 1")
        names = {row["table_name"] for row in tables}
        assert "numbers" in names and "gated" not in names
    finally:
        shared.gate.touch()
    code, out, err = finish(first)
    assert code == 0, out + err
    assert not build_lock_holders(shared.dsn)  # released at the end of the build

    # The catalog is consistent: one run per stage (the refused build recorded nothing),
    # every run published by exactly one snapshot, snapshots numbered without gaps.
    store = Warehouse(shared.root / "warehouse-b", f"postgres:{shared.dsn}")
    con = store.connect(read_only=True)
    try:
        runs = con.execute(
            "select stage, status, snapshot_id from cellstore_meta.stage_runs order by stage"
        ).fetchall()
        snapshot_ids = [r[0] for r in con.execute("select snapshot_id from snapshots()").fetchall()]
        gated = con.execute("select count(*) from gated").fetchone()[0]
    finally:
        con.close()
    assert [r[0] for r in runs] == ["doubled", "gated", "numbers", "squares", "total"]
    assert all(status == "built" and snap is not None for _, status, snap in runs)
    assert len({snap for *_, snap in runs}) == len(runs)
    assert snapshot_ids == list(range(len(snapshot_ids)))
    assert gated == 5
    # Now the second user builds from their machine: everything is up to date for them too.
    code, out, err = finish(cellstore(shared, "build", machine="b"))
    assert code == 0 and "5 up to date" in out, out + err


def test_a_killed_build_releases_the_catalog_lock(shared: ToyProject):
    """Postgres drops the lock with the connection: no stale lock after a crash."""
    first = cellstore(shared, "build", machine="a")
    wait_for_lock(shared.dsn, first)
    first.kill()
    first.wait(timeout=30)
    deadline = time.monotonic() + 60
    while build_lock_holders(shared.dsn) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not build_lock_holders(shared.dsn)
    shared.gate.touch()
    code, out, err = finish(cellstore(shared, "build", machine="b"))
    assert code == 0, out + err
