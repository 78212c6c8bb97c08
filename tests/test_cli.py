"""The `cellstore` command as a user runs it: output, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode != 0
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_build_ls_history_and_sql_formats(toy, tmp_path):
    out = toy.cli("build", check=True).stdout
    assert "built" in out and "total" in out
    assert "up to date" in toy.cli("build", check=True).stdout
    ls = toy.cli("ls", check=True).stdout
    assert "doubled" in ls and "numbers" in ls
    history = toy.cli("history", "doubled", check=True).stdout
    assert "doubled" in history and "built" in history
    csv = toy.cli(
        "sql", "select i, twice from doubled order by i", "--format", "csv", check=True
    ).stdout
    assert csv.splitlines() == ["i,twice", "0,0", "1,2", "2,4", "3,6", "4,8"]
    rows = json.loads(toy.cli("sql", "select total from total", "-f", "json", check=True).stdout)
    assert rows == [{"total": 20}]
    target = tmp_path / "doubled.parquet"
    toy.cli("sql", "select * from doubled", "-f", "parquet", "--out", str(target), check=True)
    import pyarrow.parquet as pq

    assert pq.read_table(target).num_rows == 5
    assert "numbers" in toy.cli("dag", check=True).stdout
    assert "build plan" in toy.cli("build", "--dry-run", check=True).stdout


def test_sql_refuses_writes_and_serves_old_snapshots(toy):
    toy.cli("build", check=True)
    first = toy.query("select max(snapshot_id) from lake.snapshots()")[0][0]
    toy.config("[stages.numbers]\nn = 7\n")
    toy.cli("build", check=True)
    line = one_error_line(toy.cli("sql", "delete from numbers"))
    assert "read-only" in line and "DELETE" in line
    line = one_error_line(toy.cli("sql", "create table x as select 1"))
    assert "read-only" in line
    assert toy.query("select count(*) from numbers") == [(7,)]
    old = toy.cli(
        "sql", "select count(*) as n from numbers", "--at", str(first), "-f", "csv", check=True
    )
    assert old.stdout.splitlines() == ["n", "5"]
    assert "snapshot 999 does not exist" in one_error_line(
        toy.cli("sql", "select 1", "--at", "999")
    )


@pytest.mark.parametrize(
    ("setup", "args", "expected"),
    [
        (
            lambda t: t.sql("doubled", "select i, nope from numbers\n"),
            ["build"],
            "stage doubled (sql/doubled.sql) failed",
        ),
        (
            lambda t: t.sql("total", "select * from nowhere\n"),
            ["build"],
            "sql/total.sql reads table 'nowhere', which no stage produces",
        ),
        (lambda t: t.sql("doubled", "select * from total\n"), ["build"], "dependency cycle"),
        (
            lambda t: t.config("[stages.numbers]\nsize = 3\n"),
            ["build"],
            "[stages.numbers] unknown key 'size'",
        ),
        (
            lambda t: None,
            ["build", "--warehouse", "/nonexistent/dir/wh"],
            "parent folder does not exist",
        ),
        (lambda t: None, ["ls", "--warehouse", "missing_wh"], "does not exist"),
        (lambda t: None, ["sql", "select 1", "--warehouse", "missing_wh"], "does not exist"),
    ],
    ids=[
        "wrong-sql",
        "missing-table",
        "cycle",
        "bad-config-key",
        "build-no-parent",
        "ls-missing-warehouse",
        "sql-missing-warehouse",
    ],
)
def test_user_mistakes_give_one_clear_line(toy, setup, args, expected):
    setup(toy)
    proc = toy.cli(*args)
    line = one_error_line(proc)
    assert expected in line, line


def test_reads_keep_working_while_a_build_writes(toy, tmp_path):
    """A second process queries while a long stage runs and while its commit is pending."""
    toy.cli("build", check=True)
    gate = tmp_path / "gate"
    toy.py(
        "numbers",
        f"""
        import time, pathlib
        import pyarrow as pa
        from cellstore.stage import stage

        @stage
        def numbers(*, n: int = 9):
            pathlib.Path({str(gate)!r}).write_text("running")
            while pathlib.Path({str(gate)!r}).read_text() != "go":
                time.sleep(0.05)
            return pa.table({{"i": list(range(n))}})
        """,
    )
    writer = subprocess.Popen(
        [sys.executable, "-m", "cellstore", "build"],
        cwd=toy.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while not (gate.exists() and gate.read_text() == "running"):
            assert time.time() < deadline, "build never started the stage"
            time.sleep(0.05)
        during = toy.cli("sql", "select count(*) as n from numbers", "-f", "csv", check=True)
        assert during.stdout.splitlines() == ["n", "5"]
        second = toy.cli("build")
        assert "another build is running" in one_error_line(second)
        gate.write_text("go")
        assert writer.wait(timeout=120) == 0, writer.stderr.read()
    finally:
        writer.kill()
    after = toy.cli("sql", "select count(*) as n from numbers", "-f", "csv", check=True)
    assert after.stdout.splitlines() == ["n", "9"]


def test_reader_sees_last_commit_while_a_transaction_is_open(tmp_path):
    """Warehouse level: an open write transaction in one process, a reader in another."""
    from cellstore.engine.warehouse import Warehouse

    wh = Warehouse(tmp_path / "wh")
    con = wh.connect()
    con.execute("create table t as select 1 as v")
    con.execute("begin")
    con.execute("create or replace table t as select 2 as v")
    code = (
        "from cellstore.engine.warehouse import Warehouse; import sys; "
        f"c = Warehouse(__import__('pathlib').Path({str(wh.root)!r})).connect(read_only=True); "
        "print(c.execute('select v from t').fetchone()[0])"
    )
    reader = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert reader.stdout.strip() == "1", reader.stderr
    con.execute("commit")
    reader = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert reader.stdout.strip() == "2", reader.stderr


def test_gc_removes_files_left_by_a_killed_write(toy):
    """A process killed mid-transaction leaves Parquet files no snapshot references."""
    toy.cli("build", check=True)
    code = (
        "import os, pathlib; from cellstore.engine.warehouse import Warehouse; "
        f"c = Warehouse(pathlib.Path({str(toy.warehouse_dir)!r})).connect(); c.execute('begin'); "
        "c.execute('create or replace table numbers as select range as i from range(500000)'); "
        "os._exit(9)"
    )
    subprocess.run([sys.executable, "-c", code], timeout=120)
    data_files = lambda: sorted(p for p in (toy.warehouse_dir / "data").rglob("*.parquet"))  # noqa: E731
    before = data_files()
    assert before, "the killed write should have left a Parquet file behind"
    assert "orphaned files to delete: " in toy.cli("gc", "--dry-run", check=True).stdout
    assert data_files() == before
    out = toy.cli("gc", check=True).stdout
    assert f"orphaned files deleted: {len(before)}" in out
    assert data_files() == []
    assert toy.query("select count(*) from numbers") == [(5,)]


def test_usage_errors_print_usage_not_a_traceback(toy):
    proc = toy.cli("build", "--select", "numbers", "doubled")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "unexpected extra argument" in proc.stderr
