"""What a build shows: live progress (a bar on a terminal, timed lines in a log) and a summary."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from cellstore.engine.runner import BuildResult, Reporter, StagePlan, StageResult

STATUS_STYLE = {
    "built": "green",
    "incremental": "green",
    "up to date": "dim",
    "failed": "bold red",
    "blocked": "yellow",
}
# Seconds between two progress lines of a running stage when output goes to a log.
LOG_INTERVAL_ENV = "CELLSTORE_PROGRESS_SECONDS"
LOG_INTERVAL_S = 30.0
EXAMPLES_PER_REASON = 3
_UPSTREAM = re.compile(r"^upstream (\S+) failed$")


def make_reporter(console: Console) -> Reporter:
    """A progress bar on a terminal; timed plain lines when output is piped to a log."""
    if console.is_terminal:
        return RichReporter(console)
    interval = float(os.environ.get(LOG_INTERVAL_ENV, LOG_INTERVAL_S))
    return LogReporter(console, interval)


def count_text(done: float, total: float | None, elapsed: float) -> str:
    """`120/962 (12%), 4.1/s`, or `120 done, 4.1/s` without a total; "" before any count.
    Slow counts (epochs of training, say) read per minute: `1/2 (50%), 0.15/min`."""
    per_s = done / elapsed if elapsed > 0 and done else 0.0
    rate = f"{per_s:.1f}/s" if per_s >= 0.1 else f"{60 * per_s:.2g}/min" if per_s else ""
    if total:
        text = f"{done:,.0f}/{total:,.0f} ({100 * done / total:.0f}%)"
    elif done:
        text = f"{done:,.0f} done"
    else:
        return ""
    return f"{text}, {rate}" if rate else text


def root_cause(result: StageResult, by_stage: dict[str, StageResult]) -> str:
    """Why a stage is blocked, naming the stage that actually failed (not a blocked one)."""
    chain: list[str] = []
    current = result
    while current.status == "blocked":
        match = _UPSTREAM.match(current.reason or "")
        upstream = by_stage.get(match.group(1)) if match else None
        if upstream is None or upstream.stage in chain:
            break
        chain.append(upstream.stage)
        current = upstream
    if not chain:
        return result.reason or "blocked"
    via = f" (via {', '.join(chain[:-1])})" if len(chain) > 1 else ""
    return f"upstream {chain[-1]} {current.status}{via}"


class _StageLines:
    """Prints each stage's result line; remembers results to explain blocked stages."""

    def __init__(self, console: Console):
        self.console = console
        self.results: dict[str, StageResult] = {}

    def print_result(self, result: StageResult) -> None:
        self.results[result.stage] = result
        style = STATUS_STYLE.get(result.status, "")
        parts = [f"[{style}]{result.status:<11}[/]", f"{result.stage:<28}"]
        if result.n_rows is not None:
            parts.append(f"{result.n_rows:>10,} rows")
        if result.duration_s >= 0.01:
            parts.append(f"{result.duration_s:6.1f}s")
        if result.snapshot_id is not None:
            parts.append(f"[dim]snapshot {result.snapshot_id}[/]")
        warned = [c for c in result.checks if not c.passed and c.severity == "warn"]
        if warned:
            parts.append(f"[yellow]{len(warned)} check warning(s)[/]")
        if result.status == "blocked":
            parts.append(f"[dim]{escape(root_cause(result, self.results))}[/]")
        elif result.status == "failed":
            parts.append(f"[dim]{escape(result.error or result.reason)}[/]")
        elif result.status != "up to date" and result.reason:
            parts.append(f"[dim]({escape(result.reason)})[/]")
        self.console.print(" ".join(parts), highlight=False, soft_wrap=True)


class _CountColumn(ProgressColumn):
    """done/total and rate; nothing for a stage that reports no count (never `0/None`)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        return Text(count_text(task.completed, task.total, elapsed), style="progress.download")


class RichReporter(_StageLines, Reporter):
    """Draws a progress bar per running stage and prints each result as it ends."""

    def __init__(self, console: Console):
        super().__init__(console)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            _CountColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def stage_started(self, plan: StagePlan) -> None:
        label = f"{plan.stage} [dim]({plan.action}: {escape(plan.reason)})[/]"
        self.tasks[plan.stage] = self.progress.add_task(label, total=None)

    def stage_progress(self, stage: str, advance: float, total: float | None) -> None:
        task = self.tasks.get(stage)
        if task is None:
            return
        if total is not None:
            self.progress.update(task, total=total)
        self.progress.advance(task, advance)

    def stage_finished(self, result: StageResult) -> None:
        task = self.tasks.pop(result.stage, None)
        if task is not None:
            self.progress.remove_task(task)
        self.print_result(result)


class LogReporter(_StageLines, Reporter):
    """Plain lines for logs: a start line, then one line per running stage every `interval` s."""

    def __init__(self, console: Console, interval: float = LOG_INTERVAL_S):
        super().__init__(console)
        self.interval = interval
        # stage → [started, done, total or 0, last line printed at]
        self.running: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._tick, name="cellstore-progress", daemon=True)

    def __enter__(self) -> LogReporter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def _tick(self) -> None:
        while not self.stop.wait(min(1.0, self.interval)):
            now = time.monotonic()
            lines = []
            with self.lock:
                for stage, state in self.running.items():
                    started, done, total, last = state
                    if now - last >= self.interval:
                        state[3] = now
                        lines.append(self._line(stage, now - started, done, total or None))
            for line in lines:
                self.console.print(line, highlight=False, soft_wrap=True)

    @staticmethod
    def _line(stage: str, elapsed: float, done: float, total: float | None) -> str:
        counted = count_text(done, total, elapsed) or "running, no count reported"
        return f"{'…':<11} {stage:<28} {counted}, {elapsed:.0f} s"

    def stage_started(self, plan: StagePlan) -> None:
        with self.lock:
            now = time.monotonic()
            self.running[plan.stage] = [now, 0.0, 0.0, now]
        self.console.print(
            f"{'started':<11} {plan.stage:<28} ({escape(plan.action)}: {escape(plan.reason)})",
            highlight=False,
            soft_wrap=True,
        )

    def stage_progress(self, stage: str, advance: float, total: float | None) -> None:
        with self.lock:
            state = self.running.get(stage)
            if state is None:
                return
            state[1] += advance
            if total is not None:
                state[2] = total

    def stage_finished(self, result: StageResult) -> None:
        with self.lock:
            self.running.pop(result.stage, None)
        self.print_result(result)


def print_plan(console: Console, plans: list[StagePlan]) -> None:
    table = Table(title="build plan (dry run: nothing is built)", title_justify="left")
    table.add_column("stage")
    table.add_column("action")
    table.add_column("why")
    for plan in plans:
        style = {"skip": "dim", "not selected": "dim"}.get(plan.action, "bold")
        table.add_row(plan.stage, f"[{style}]{plan.action}[/]", escape(plan.reason))
    console.print(table)


def missing_sources(settings: dict[str, dict[str, Any]], project_dir: Path) -> list[str]:
    """One line per `source` setting that names a folder that does not exist."""
    stages_by_folder: dict[Path, list[str]] = {}
    for stage, values in settings.items():
        source = values.get("source")
        if not isinstance(source, str) or not source.strip():
            continue  # empty: the embedded demo
        folder = Path(source).expanduser()
        if not folder.is_absolute():
            folder = project_dir / folder
        if not folder.is_dir():
            stages_by_folder.setdefault(folder, []).append(stage)
    return [
        f"source folder {folder} does not exist (setting `source` of {', '.join(stages)})"
        for folder, stages in stages_by_folder.items()
    ]


Rejected = tuple[str, int, list[tuple[str, int, list]]]  # table, rows, [(reason, n, examples)]


def rejected_rows(con: Any, tables: list[str]) -> list[Rejected]:
    """(table, rows, [(reason, count, example details)]) for each non-empty rejected table."""
    found = []
    for table in tables:
        columns = {r[0] for r in con.execute(f'describe "{table}"').fetchall()}
        if "reason" not in columns:
            continue
        what = next((c for c in ("detail", "file", "image_id") if c in columns), None)
        examples = f'list("{what}")[1:{EXAMPLES_PER_REASON}]' if what else "[]"
        rows = con.execute(
            f'select reason, count(*), {examples} from "{table}" group by reason order by 2 desc'
        ).fetchall()
        if rows:
            found.append((table, sum(r[1] for r in rows), [(r[0], r[1], r[2]) for r in rows]))
    return found


def print_summary(
    console: Console,
    result: BuildResult,
    warehouse: Any,
    outputs: dict[str, list[str]] | None = None,
) -> None:
    """Counts by status, then what a user must know: rejected rows, warnings, failures.

    `warehouse` is the Warehouse the build wrote (read again for the rejected tables);
    `outputs` maps each stage to the tables it writes.
    """
    counts: dict[str, int] = {}
    for r in result.results:
        counts[r.status] = counts.get(r.status, 0) + 1
    text = ", ".join(f"{n} {status}" for status, n in counts.items()) or "nothing selected"
    root = getattr(warehouse, "root", warehouse)
    console.print(f"[bold]build {result.build_id}[/]: {text} [dim]→ {root}[/]")

    written = [
        table
        for r in result.results
        if r.status in ("built", "incremental")
        for table in (outputs or {}).get(r.stage, [])
        if table.endswith("_rejected")
    ]
    if written and hasattr(warehouse, "connect"):
        con = warehouse.connect(read_only=True)
        try:
            rejected = rejected_rows(con, written)
        finally:
            con.close()
        if rejected:
            console.print("[bold]rejected rows[/] (written by this build):")
        for table, n_rows, reasons in rejected:
            by_reason = ", ".join(f"{reason} {n}" for reason, n, _ in reasons)
            console.print(f"  {table}: {n_rows} row(s): {escape(by_reason)}", highlight=False)
            for reason, n, examples in reasons:
                for example in examples:
                    console.print(
                        f"    {escape(reason)}: {escape(str(example))}",
                        highlight=False,
                        soft_wrap=True,
                    )
                if n > len(examples):
                    console.print(
                        f"    ... {n - len(examples)} more: "
                        f"cellstore sql \"select * from {table} where reason = '{reason}'\"",
                        highlight=False,
                        soft_wrap=True,
                    )

    warned = [c for r in result.results for c in r.checks if not c.passed and c.severity == "warn"]
    if warned:
        console.print("[bold yellow]checks that warned[/]:")
        for check in warned:
            console.print(f"  {escape(check.message)}", highlight=False, soft_wrap=True)

    by_stage = {r.stage: r for r in result.results}
    for status in ("failed", "blocked"):
        stages = [r for r in result.results if r.status == status]
        if not stages:
            continue
        console.print(f"[bold]{status}[/]:")
        for r in stages:
            why = root_cause(r, by_stage) if status == "blocked" else (r.error or r.reason)
            console.print(f"  {r.stage}: {escape(why)}", highlight=False, soft_wrap=True)
