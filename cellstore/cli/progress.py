"""Rich display of a build: a live line per running stage, one summary line per result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cellstore.engine.runner import BuildResult, Reporter, StagePlan, StageResult

STATUS_STYLE = {
    "built": "green",
    "incremental": "green",
    "up to date": "dim",
    "failed": "bold red",
    "blocked": "yellow",
}


class RichReporter(Reporter):
    """Draws a progress bar for the running stage and prints each result as it ends."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:>6.0f}/{task.total}"),
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
        label = f"{plan.stage} [dim]({plan.action}: {plan.reason})[/]"
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
        if result.status in ("failed", "blocked"):
            parts.append(f"[dim]{escape(result.error or result.reason)}[/]")
        elif result.status != "up to date" and result.reason:
            parts.append(f"[dim]({result.reason})[/]")
        self.console.print(" ".join(parts), highlight=False, soft_wrap=True)


def print_plan(console: Console, plans: list[StagePlan]) -> None:
    table = Table(title="build plan (dry run: nothing is built)", title_justify="left")
    table.add_column("stage")
    table.add_column("action")
    table.add_column("why")
    for plan in plans:
        style = {"skip": "dim", "not selected": "dim"}.get(plan.action, "bold")
        table.add_row(plan.stage, f"[{style}]{plan.action}[/]", plan.reason)
    console.print(table)


def print_summary(console: Console, result: BuildResult, warehouse: Path) -> None:
    counts: dict[str, int] = {}
    for r in result.results:
        counts[r.status] = counts.get(r.status, 0) + 1
    text = ", ".join(f"{n} {status}" for status, n in counts.items()) or "nothing selected"
    console.print(f"[bold]build {result.build_id}[/]: {text} [dim]→ {warehouse}[/]")
