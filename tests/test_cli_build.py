"""What `cellstore build` tells a user: progress in logs, and a summary of what went wrong."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, ToyProject

SLOW_COUNTED = '''
import time
import pyarrow as pa
from cellstore.stage import stage

@stage
def numbers(*, n: int = 8, ctx):
    """Counts its rows as it makes them. Grain: i."""
    for _ in range(n):
        time.sleep(0.15)
        ctx.progress(1, total=n)
    return pa.table({"i": list(range(n))})
'''

SLOW_UNCOUNTED = '''
import time
import pyarrow as pa
from cellstore.stage import stage

@stage
def quiet(numbers):
    """Reports no count. Grain: x."""
    time.sleep(1.0)
    return pa.table({"x": [1]})
'''


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """The real CLI with stdout piped, as in a CI log."""
    return subprocess.run(
        [sys.executable, "-m", "cellstore", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )


@pytest.fixture
def failing(tmp_path) -> ToyProject:
    """numbers → quiet; numbers → bad (fails) → after_bad → after_after (both blocked)."""
    toy = ToyProject(tmp_path / "toy")
    toy.py("numbers", SLOW_COUNTED)
    toy.py("quiet", SLOW_UNCOUNTED)
    toy.sql("bad", "select i from numbers where error('kaput') is null\n")
    toy.sql("after_bad", "select * from bad\n")
    toy.sql("after_after", "select * from after_bad\n")
    return toy


def test_a_log_gets_timed_progress_lines_and_the_summary_names_the_failed_stage(failing):
    done = run(["build"], failing.root, CELLSTORE_PROGRESS_SECONDS="0.2")
    out = done.stdout
    assert done.returncode == 1
    # Counted stage: done/total, percent and rate; uncounted stage: says so, never 0/None.
    assert re.search(r"numbers\s+\d/8 \(\d+%\), [\d.]+/s, \d+ s", out), out
    assert re.search(r"quiet\s+running, no count reported, \d+ s", out), out
    assert "None" not in out
    summary = out[out.index("build ") :]
    assert "1 failed" in summary and "2 blocked" in summary
    assert "bad: stage bad (sql/bad.sql) failed" in summary and "kaput" in summary
    # The stage two levels down names the stage that failed, not the blocked one between.
    assert "after_bad: upstream bad failed" in summary
    assert "after_after: upstream bad failed (via after_bad)" in summary
    assert "error: stage bad" in done.stderr and "Traceback" not in done.stderr


def test_dry_run_reports_a_source_folder_that_does_not_exist(tmp_path):
    missing = tmp_path / "no_such_source"
    done = run(
        ["build", "--dry-run", "--source", str(missing), "--warehouse", str(tmp_path / "w")],
        REPO,
    )
    assert done.returncode == 1
    assert "build plan" in done.stdout
    assert f"source folder {missing} does not exist" in done.stderr
    assert not (tmp_path / "w").exists()


def test_a_truncated_tiff_is_named_with_its_reason_in_the_summary(tmp_path):
    from cellstore.synth import generate

    source = tmp_path / "source"
    generate(source, plates=["Week1_22123"], sites=1, scale=0.25, wells="annotated")
    victim = sorted(source.glob("Week1/Week1_22123/*_w2*.tif"))[3]
    victim.write_bytes(victim.read_bytes()[:300])  # an interrupted copy
    args = ["build", "--source", str(source), "--select", "images"]
    done = run([*args, "--warehouse", str(tmp_path / "w")], REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout[done.stdout.index("build ") :]
    assert "images_rejected: 1 row(s): truncated_tiff 1" in summary, summary
    line = next(line for line in summary.splitlines() if victim.name in line)
    assert "truncated_tiff" in line and "file has 300" in line, line
    assert "checks that warned" in summary and "images_rejected" in summary
