"""Run records a user reads: start times, `ls` after gc, checks on other tables, `--at`."""

from __future__ import annotations

import re
from datetime import datetime

from conftest import ToyProject
from rich.console import Console

from cellstore.engine.inspect import print_tables
from cellstore.engine.warehouse import Warehouse

TIMED_NUMBERS = """
import datetime
import pathlib
import time
import pyarrow as pa
from cellstore.stage import stage

@stage
def numbers(*, n: int = 5, log: str = ""):
    pathlib.Path(log).write_text(datetime.datetime.now(datetime.UTC).isoformat() + "\\n")
    time.sleep(0.5)
    with open(log, "a") as out:
        out.write(datetime.datetime.now(datetime.UTC).isoformat() + "\\n")
    return pa.table({"i": list(range(n))})
"""


def test_started_holds_the_start_time_not_the_commit_time(toy: ToyProject, tmp_path):
    log = tmp_path / "times.log"
    toy.py("numbers", TIMED_NUMBERS)
    toy.config(f"[stages.numbers]\nlog = {str(log)!r}\n")
    assert toy.build(["numbers"]).ok
    work_began, work_ended = (datetime.fromisoformat(t) for t in log.read_text().split())
    runs = "from cellstore_meta.stage_runs where stage = 'numbers'"
    ((started,),) = toy.query(f"select started_at {runs}")
    assert started <= work_began
    ((committed,),) = toy.query(f"select committed_at {runs}")
    assert work_ended <= committed


def ls_rows(warehouse: Warehouse) -> dict[str, list[str]]:
    console = Console(record=True, width=200)
    print_tables(console, warehouse)
    rows = {}
    for line in console.export_text().splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line) if c.strip()]
        if len(cells) == 5 and cells[0] != "table":
            rows[cells[0]] = cells
    return rows


def test_ls_keeps_snapshot_and_built_at_after_gc(toy: ToyProject):
    assert toy.build().ok
    toy.sql("squares", "select i, i * i * i as square from numbers\n")
    assert toy.build().ok
    gc = toy.cli("gc", "--older-than-days", "0", check=True)
    assert "expired snapshots:" in gc.stdout
    rows = ls_rows(Warehouse(toy.warehouse_dir))
    assert set(rows) == {"numbers", "doubled", "squares", "total"}
    for table, (_, _, snapshot, built_at, stage) in rows.items():
        assert snapshot.isdigit(), (table, snapshot)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", built_at), (table, built_at)
        assert stage == table
    # The snapshot shown is the one that published the table, as recorded at commit time.
    recorded = dict(
        toy.query(
            "select stage, committed_snapshot from cellstore_meta.runs "
            "qualify row_number() over (partition by stage order by started_at desc) = 1"
        )
    )
    assert {t: int(r[2]) for t, r in rows.items()} == recorded


CONTRACT = """
table: aaa
columns:
  - {name: i, type: BIGINT, role: key}
checks:
  - relationship:
      columns: [i]
      to: zzz
      severity: warn
"""


def test_check_reading_another_table_runs_after_it_or_is_skipped(toy: ToyProject):
    (toy.root / "schemas").mkdir()
    (toy.root / "schemas" / "aaa.yml").write_text(CONTRACT)
    toy.sql("aaa", "select 1::bigint as i\n")
    toy.sql("zzz", "select 1::bigint as i\n")
    # On its own on an empty warehouse: zzz does not exist, the check is skipped, no warning.
    result = toy.build(["aaa"])
    assert result.ok
    (check,) = [c for c in result.results[0].checks if c.check.startswith("relationship")]
    assert check.passed and "skipped: table zzz is not built" in check.message
    # A whole build runs zzz first (aaa's check reads it), so the check really runs.
    toy.sql("aaa", "select 1::bigint as i union all select 2\n")
    result = toy.build()
    order = [r.stage for r in result.results]
    assert order.index("zzz") < order.index("aaa")
    (check,) = [
        c
        for r in result.results
        if r.stage == "aaa"
        for c in r.checks
        if c.check.startswith("relationship")
    ]
    assert not check.passed and check.n_failing == 1 and "skipped" not in check.message


def test_real_project_builds_images_before_external_profiles():
    from conftest import REPO

    from cellstore.engine import dag
    from cellstore.engine.project import load_project
    from cellstore.engine.runner import _check_reads

    project = load_project(REPO)
    order = dag.topological_order(project, after=_check_reads(project))
    assert order.index("images") < order.index("external_profiles")
    for name, stage in project.stages.items():
        assert all(order.index(up) < order.index(name) for up in project.upstream_stages(stage))


def test_negative_snapshot_gives_the_same_line_as_a_missing_one(toy: ToyProject):
    assert toy.build(["numbers"]).ok
    far = toy.cli("sql", "select 1", "--at", "99999")
    negative = toy.cli("sql", "select 1", "--at", "-1")
    assert far.returncode == negative.returncode == 1
    assert "Traceback" not in negative.stderr
    pattern = r"error: snapshot {} does not exist in \S+"
    assert re.search(pattern.format("99999"), far.stderr), far.stderr
    assert re.search(pattern.format("-1"), negative.stderr), negative.stderr
    assert len(negative.stderr.strip().splitlines()) == 1
