"""Crash suite: kill -9 a small build at random points and check what it left behind.

Each trial builds a 2-plate synthetic source (fresh, or `--full-refresh` over a built
warehouse), kills the build process with SIGKILL at a random moment — round-robin over the
stages' time windows of an uninterrupted reference build, every fourth trial anywhere — and
checks:
  consistent   the catalog is readable (`ls`), every referenced file is whole (`verify`), and
               every table present equals the reference build's (any committed state of one
               source does: builds are bit-reproducible), so none is partial;
  orphans      files no snapshot references, before → after `gc` (must end at 0), and the
               scratch folders of the dead build (before → after);
  leftover     processes of the killed build still alive (dask workers), which are then killed;
  rebuild      a plain `cellstore build` completes and every table is bit-identical to the
               reference (a killed artifact stage, e.g. training, must resume and match).
Prints one table and a summary line. `--gc-race N` instead runs the gc-during-build loop N
times (`build & while alive: gc`) and checks nothing was published with a missing file.

    python benchmarks/crash_suite.py --trials 30            # ~30 min on a loaded 2-core VM
    python benchmarks/crash_suite.py --gc-race 10
    python benchmarks/crash_suite.py --trials 10 --only simclr   # kills during training
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PLATES = "Week1_22123,Week2_24121"
ORPHANS = r"orphaned files to delete: (\d+)"
SCRATCH = r"scratch of finished builds to delete: (\d+)"


# The suite's project settings: a SimCLR run of three short epochs, so that kills land in
# the middle of training too and the rebuild has checkpoints to resume from.
SETTINGS = """
[stages.simclr]
size = 24
epochs = 3
max_cells = 1024
batch_size = 128
"""
CONFIG: list[str] = []  # ["--config", path] once main() has written SETTINGS
CONFIGURED = {"build", "ls", "verify", "gc", "check"}


def command(*args: str) -> list[str]:
    """`python -m cellstore ARGS`, with the suite's config for commands that read settings
    (gc too: it keeps only the in-progress artifact folders of current fingerprints)."""
    return [sys.executable, "-m", "cellstore", *args, *(CONFIG if args[0] in CONFIGURED else [])]


def cellstore(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(*args),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def digests(warehouse: Path) -> dict[str, tuple[int, str]]:
    """Content digests without the role-`run` columns (timings, run ids) of the contracts."""
    from cellstore.checks.contract import run_columns
    from cellstore.engine.verify import content_digests
    from cellstore.engine.warehouse import Warehouse

    con = Warehouse(warehouse).connect(read_only=True)
    try:
        return content_digests(con, exclude=run_columns(REPO / "schemas"))
    finally:
        con.close()


def session_processes(sid: int) -> list[int]:
    """Live processes of session `sid` (the build was started as a session leader)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == sid:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    pids.append(int(entry.name))
        except (ProcessLookupError, PermissionError, FileNotFoundError):
            continue
    return pids


def committed_since(warehouse: Path, after: int) -> list[str]:
    """Stages whose commits landed after snapshot `after`, from the commit messages."""
    from cellstore.engine.warehouse import Warehouse, snapshots

    con = Warehouse(warehouse).connect(read_only=True)
    try:
        return [s["stage"] for s in snapshots(con) if s["snapshot_id"] > after and "stage" in s]
    finally:
        con.close()


def last_snapshot(warehouse: Path) -> int:
    from cellstore.engine.warehouse import LAKE, Warehouse

    if not (warehouse / "catalog.sqlite").exists():
        return -1
    con = Warehouse(warehouse).connect(read_only=True)
    try:
        return con.execute(f"select max(snapshot_id) from {LAKE}.snapshots()").fetchone()[0]
    finally:
        con.close()


def stage_windows(warehouse: Path, started: float) -> dict[str, tuple[float, float]]:
    """stage → (start, end) seconds after the build process started, from the run records."""
    from cellstore.engine.warehouse import META_SCHEMA, Warehouse

    con = Warehouse(warehouse).connect(read_only=True)
    try:
        rows = con.execute(
            f"select stage, epoch(started_at), duration_s from {META_SCHEMA}.runs "
            "where status = 'built'"
        ).fetchall()
    finally:
        con.close()
    return {stage: (end - duration - started, end - started) for stage, end, duration in rows}


def count(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    return int(found.group(1)) if found else -1


@dataclass
class Trial:
    index: int
    mode: str
    scheduler: str
    target: str
    kill_s: float
    killed_during: str = "-"
    exited_first: bool = False
    tables: int = 0
    inconsistent: int = 0
    damaged: int = 0
    readable: bool = True
    orphans: str = "-"
    scratch: str = "-"
    leftover: int = 0
    rebuild_ok: bool = False
    identical: bool = False
    note: str = ""


def run_trial(
    trial: Trial,
    source: Path,
    reference: Path,
    ref_digests: dict,
    order: list[str],
    artifact_stages: set[str],
    work: Path,
) -> Trial:
    warehouse = work / f"trial{trial.index:03d}"
    shutil.rmtree(warehouse, ignore_errors=True)
    args = ["build", "--source", str(source), "--warehouse", str(warehouse)]
    args += ["--scheduler", trial.scheduler] if trial.scheduler else []
    if trial.mode == "full-refresh":
        shutil.copytree(reference, warehouse)
        args.append("--full-refresh")
    before = last_snapshot(warehouse)
    proc = subprocess.Popen(
        command(*args),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its children (dask workers) share its session id
    )
    try:
        proc.wait(timeout=trial.kill_s)
        trial.exited_first = True
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    time.sleep(1.0)  # let orphaned children notice their parent died, if they do
    leftover = [p for p in session_processes(proc.pid) if p != proc.pid]
    trial.leftover = len(leftover)
    for pid in leftover:  # processes this suite started (its build's children)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # ---- consistency of what the kill left -------------------------------------------
    if (warehouse / "catalog.sqlite").exists():
        listed = cellstore("ls", "--warehouse", str(warehouse))
        trial.readable = listed.returncode == 0 and "Traceback" not in listed.stderr
        committed = set(committed_since(warehouse, before))
        pending = [s for s in order if s not in committed]
        trial.killed_during = pending[0] if pending and not trial.exited_first else "-"
        verify = cellstore("verify", "--warehouse", str(warehouse))
        trial.damaged = verify.stderr.count("damaged:")
        found = digests(warehouse)
        trial.tables = len(found)
        trial.inconsistent = sum(found[t] != ref_digests.get(t) for t in found)
        gc = cellstore("gc", "--warehouse", str(warehouse))  # prints what it deleted
        after = cellstore("gc", "--dry-run", "--warehouse", str(warehouse)).stdout
        deleted = gc.stdout.replace(" deleted:", " to delete:")
        trial.orphans = f"{count(ORPHANS, deleted)}→{count(ORPHANS, after)}"
        trial.scratch = f"{count(SCRATCH, deleted)}→{count(SCRATCH, after)}"
        if gc.returncode != 0:
            trial.note = f"gc failed: {gc.stderr.strip()[-120:]}"
    else:
        trial.killed_during = order[0] if not trial.exited_first else "-"
        trial.orphans = trial.scratch = "0→0"

    # ---- the completed rebuild ---------------------------------------------------------
    rebuild = cellstore("build", *args[1:5], *(args[5:7] if trial.scheduler else []))
    trial.rebuild_ok = rebuild.returncode == 0
    if not trial.rebuild_ok:
        trial.note = (rebuild.stderr.strip().splitlines() or ["?"])[-1][:160]
    else:
        trial.identical = digests(warehouse) == ref_digests
        if not trial.identical:
            found = digests(warehouse)
            names = set(found) | set(ref_digests)
            trial.note = "differs: " + ",".join(
                sorted(t for t in names if found.get(t) != ref_digests.get(t))
            )
        if trial.killed_during in artifact_stages:
            trial.note = (trial.note + " artifact stage resumed").strip()
    shutil.rmtree(warehouse, ignore_errors=True)
    return trial


HEADER = (
    f"{'#':>3} {'mode':<12} {'sched':<6} {'kill s':>6} {'target':<24} {'killed during':<24} "
    f"{'tables':>6} {'incons':>6} {'damaged':>7} {'orphans':>8} {'scratch':>7} "
    f"{'leftover':>8} {'rebuild':>8} note"
)


def row(t: Trial) -> str:
    return (
        f"{t.index:>3} {t.mode:<12} {t.scheduler or 'dask':<6} {t.kill_s:>6.1f} "
        f"{t.target:<24} {t.killed_during:<24} {t.tables:>6} "
        f"{t.inconsistent + (0 if t.readable else 1):>6} {t.damaged:>7} {t.orphans:>8} "
        f"{t.scratch:>7} {t.leftover:>8} {'same' if t.identical else 'DIFF':>8} {t.note}"
    )


def print_table(trials: list[Trial]) -> None:
    print(HEADER)
    print("-" * len(HEADER))
    for t in trials:
        print(row(t))
    killed = [t for t in trials if not t.exited_first]
    during = {t.killed_during for t in killed}
    print(
        f"\n{len(trials)} trials ({len(killed)} killed mid-build, during {len(during)} distinct "
        f"stages): {sum(t.inconsistent for t in trials)} inconsistent tables, "
        f"{sum(not t.readable for t in trials)} unreadable catalogs, "
        f"{sum(t.damaged for t in trials)} damaged files, "
        f"{sum(t.identical for t in trials)}/{len(trials)} identical rebuilds "
        f"({100 * sum(t.identical for t in trials) / max(1, len(trials)):.0f} %), "
        f"{sum(t.leftover for t in trials)} leftover processes, orphans after gc: "
        f"{sum(int(t.orphans.split('→')[1]) for t in trials if '→' in t.orphans)}"
    )


def gc_race(runs: int, source: Path, work: Path, scheduler: str, jobs: int) -> None:
    """The issue's repro: `build & while kill -0 $!; do gc; done`, `runs` times."""

    def race(i: int) -> tuple[int, int, int, bool, bool, bool]:
        warehouse = work / f"race{i:02d}"
        shutil.rmtree(warehouse, ignore_errors=True)
        args = ["build", "--source", str(source), "--warehouse", str(warehouse)]
        args += ["--scheduler", scheduler] if scheduler else []
        build = subprocess.Popen(
            command(*args),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        calls = refused = 0
        while build.poll() is None:
            if (warehouse / "catalog.sqlite").exists():
                gc = cellstore("gc", "--warehouse", str(warehouse))
                calls += 1
                refused += "another build is running" in gc.stderr
        built = build.returncode == 0
        verify = cellstore("verify", "--warehouse", str(warehouse)).returncode == 0
        check = cellstore("check", "--warehouse", str(warehouse)).returncode == 0
        shutil.rmtree(warehouse, ignore_errors=True)
        print(f"race {i}: {calls} gc calls, {refused} refused, build {built}", flush=True)
        return i, calls, refused, built, verify, check

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = list(pool.map(race, range(runs)))
    print(f"{'#':>3} {'gc calls':>8} {'refused':>7} {'build':>6} {'verify':>7} {'check':>6}")
    for i, calls, refused, built, verify, check in rows:
        print(f"{i:>3} {calls:>8} {refused:>7} {built!s:>6} {verify!s:>7} {check!s:>6}")
    bad = sum(not (r[3] and r[4] and r[5]) for r in rows)
    print(
        f"\n{runs} builds with gc looping beside them: {sum(r[1] for r in rows)} gc calls, "
        f"{sum(r[2] for r in rows)} refused, {bad} builds with a failure (build, verify or check)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--sites", type=int, default=1)
    parser.add_argument(
        "--dask-every", type=int, default=6, help="every Nth trial uses a dask LocalCluster"
    )
    parser.add_argument("--jobs", type=int, default=1, help="trials run at once")
    parser.add_argument(
        "--kills", type=int, default=0, help="add trials until N builds were killed mid-build"
    )
    parser.add_argument("--first-index", type=int, default=0, help="number of the first trial")
    parser.add_argument("--gc-race", type=int, default=0, help="run the gc-during-build loop")
    parser.add_argument(
        "--only", default=None, help="kill only inside this stage's window (e.g. simclr)"
    )
    options = parser.parse_args()

    from cellstore.engine.dag import topological_order
    from cellstore.engine.project import load_project

    work = options.work or Path(tempfile.mkdtemp(prefix="crash_suite."))
    work.mkdir(parents=True, exist_ok=True)
    (work / "cellstore.toml").write_text(SETTINGS)
    CONFIG[:] = ["--config", str(work / "cellstore.toml")]
    source = work / "source"
    if not source.exists():
        synth = cellstore(
            "synth", "--out", str(source), "--plates", PLATES, "--sites", str(options.sites),
            "--scale", str(options.scale), "--seed", "1",
        )  # fmt: skip
        assert synth.returncode == 0, synth.stderr
    if options.gc_race:
        gc_race(options.gc_race, source, work, "inline", options.jobs)
        return

    project = load_project(REPO)
    order = topological_order(project)
    artifact_stages = {n for n, s in project.stages.items() if s.is_artifact}
    reference = work / "reference"
    marker = work / "reference.json"  # a finished reference build, reused by later runs
    if marker.exists():
        started, ref_seconds = json.loads(marker.read_text())
    else:
        shutil.rmtree(reference, ignore_errors=True)
        started = time.time()
        ref = cellstore(
            "build", "--source", str(source), "--warehouse", str(reference), "--scheduler", "inline"
        )
        ref_seconds = time.time() - started
        assert ref.returncode == 0, ref.stdout[-2000:] + ref.stderr[-2000:]
        marker.write_text(json.dumps([started, ref_seconds]))
    ref_digests = digests(reference)
    windows = stage_windows(reference, started)
    print(
        f"reference build: {ref_seconds:.1f} s, {len(ref_digests)} tables, stages {len(order)}"
        f" (artifact stages: {sorted(artifact_stages) or 'none'})"
    )
    rng = random.Random(options.seed)
    targets = [s for s in order if s in windows]
    if options.only:
        if options.only not in windows:
            raise SystemExit(f"--only {options.only}: not a stage of the reference build")
        targets = [options.only]

    def plan(first: int, n: int) -> list[Trial]:
        planned = []
        for i in range(first, first + n):
            mode = "full-refresh" if i % 3 == 2 else "fresh"
            scheduler = "" if options.dask_every and i % options.dask_every == 3 else "inline"
            if i % 4 == 0 and not options.only:  # anywhere in the build
                target, kill_s = "anywhere", rng.uniform(0.5, ref_seconds)
            else:  # inside one stage's window of the reference build, round-robin
                target = targets[(i - i // 4 - 1) % len(targets)]
                low, high = windows[target]
                kill_s = rng.uniform(max(0.5, low), max(0.6, high))
            planned.append(Trial(options.first_index + i, mode, scheduler, target, kill_s))
        return planned

    def run(trial: Trial) -> Trial:
        t0 = time.time()
        run_trial(trial, source, reference, ref_digests, order, artifact_stages, work)
        print(f"done {row(trial)} ({time.time() - t0:.0f} s)", flush=True)
        return trial

    # Trials are independent subprocess-driven runs in their own warehouses: --jobs > 1 runs
    # several at once (kill points then fall at other moments of the build; still random).
    from concurrent.futures import ThreadPoolExecutor

    # --kills N: a trial whose build ended before its kill time tests nothing about kills, so
    # keep planning trials until N builds were really killed mid-build (at most 3 × N trials).
    trials: list[Trial] = []
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        trials += pool.map(run, plan(0, options.trials))
        while options.kills and len(trials) < 3 * options.kills:
            missing = options.kills - sum(not t.exited_first for t in trials)
            if missing <= 0:
                break
            trials += pool.map(run, plan(len(trials), missing))
    print()
    print_table(trials)


if __name__ == "__main__":
    main()
