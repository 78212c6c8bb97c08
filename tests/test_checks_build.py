"""Checks inside `cellstore build`: a failing contract blocks the commit; `cellstore check`."""

from __future__ import annotations

import json


def statuses(result) -> dict[str, str]:
    return {r.stage: r.status for r in result.results}


DOUBLED = """\
table: doubled
grain: i
columns:
  - {name: i, type: BIGINT, role: key}
  - name: twice
    type: BIGINT
    role: feature
    checks: [{range: {min: 0, max: 100}}]
checks:
  - relationship: {columns: [i], to: numbers}
"""

SQUARES = """\
table: squares
columns:
  - {name: i, type: BIGINT, role: key}
  - {name: square, type: BIGINT, role: feature}
checks:
  - {row_count: {max: 10}, severity: warn}
"""


def with_contracts(toy):
    folder = toy.root / "schemas"
    folder.mkdir(exist_ok=True)
    (folder / "doubled.yml").write_text(DOUBLED)
    (folder / "squares.yml").write_text(SQUARES)
    return toy


def test_failing_check_blocks_commit_and_downstream_and_is_recorded(toy):
    with_contracts(toy)
    assert toy.build().ok
    toy.config("[stages.numbers]\nn = 60\n")  # doubled then reaches 118 > 100
    result = toy.build()
    st = statuses(result)
    assert st["numbers"] == "built"  # no contract: a warning, not a block
    assert st["doubled"] == "failed" and st["total"] == "blocked"
    assert st["squares"] == "built"  # 60 rows > 10 is only a warning
    failure = result.first_failure()
    assert "range(twice, min=0, max=100)" in failure.error and "9 row(s)" in failure.error
    # The previous version is still the one served.
    assert toy.query("select count(*), max(twice) from doubled") == [(5, 8)]
    assert toy.query("select total from total") == [(20,)]
    assert toy.query("select count(*) from numbers") == [(60,)]
    recorded = toy.query(
        "select table_name, check_name, severity, passed, n_failing from "
        "cellstore_meta.check_results where not passed"
    )
    assert ("doubled", "range(twice, min=0, max=100)", "error", False, 9) in recorded
    assert ("squares", "row_count(max=10)", "warn", False, 1) in recorded
    assert ("numbers", "schema.exists", "warn", False, 0) in recorded
    sample = toy.query(
        "select sample from cellstore_meta.check_results where check_name like 'range%' "
        "and not passed"
    )[0][0]
    assert all(row["twice"] > 100 for row in json.loads(sample))


def test_cellstore_check_rechecks_committed_tables(toy):
    with_contracts(toy)
    (toy.root / "schemas" / "moa.yml").write_text(
        "table: moa\ncolumns: [{name: moa, type: VARCHAR, role: label}]\n"
    )
    assert toy.build().ok
    ok = toy.cli("check")  # the real command line, once
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "range(twice, min=0, max=100)" in ok.stdout and "0 errors" in ok.stdout
    assert "schema.exists" in ok.stdout  # numbers and total have no contract: warnings
    assert "contract" in ok.stdout and "moa.yml has no table" in ok.stdout
    # Tighten the contract: the committed table now violates it.
    (toy.root / "schemas" / "doubled.yml").write_text(DOUBLED.replace("max: 100", "max: 5"))
    bad = check_in_process(toy, "doubled", "--failures-only")
    assert bad.exit_code == 1
    assert "range(twice, min=0, max=5)" in bad.stdout and "FAIL" in bad.stdout
    assert "relationship" not in bad.stdout  # passing checks hidden
    as_json = check_in_process(toy, "doubled", "--format", "json")
    rows = [json.loads(line) for line in as_json.stdout.splitlines() if line.startswith("{")]
    failed = [r for r in rows if not r["passed"]]
    assert [r["check"] for r in failed] == ["range(twice, min=0, max=5)"]
    assert failed[0]["n_failing"] == 2 and failed[0]["severity"] == "error"
    missing = check_in_process(toy, "nope")
    assert missing.exit_code == 1 and "no table 'nope'" in str(missing.exception)


def check_in_process(toy, *args: str):
    """`cellstore check ARGS` without a new interpreter (GX is imported once per test run)."""
    from typer.testing import CliRunner

    from cellstore.cli import app

    options = ["--project", str(toy.root), "--warehouse", str(toy.warehouse_dir)]
    return CliRunner().invoke(app, ["check", *args, *options])
