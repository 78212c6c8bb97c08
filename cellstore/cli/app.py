"""The `cellstore` command line (typer + rich)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from cellstore.cli.common import console, err_console, fail, open_warehouse
from cellstore.cli.options import ConfigOpt, ProjectOpt, WarehouseOpt
from cellstore.errors import CellstoreError

app = typer.Typer(
    name="cellstore",
    help="A feature store with dbt-like stages for single-cell phenotypic profiling.\n\n"
    "Tables live as versioned Parquet in a DuckLake warehouse; `build` refreshes them, "
    "`sql` queries them (read-only, with time travel), `export` hands them to analysts.",
    no_args_is_help=True,
    add_completion=False,
    # Plain click help: no `<bool>` labels on flags, `[default: ...]` kept as written, and
    # paragraphs reflowed to the terminal; examples sit in `\b` blocks so they never wrap.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


@app.command()
def build(
    select: Annotated[
        list[str] | None,
        typer.Option(
            "--select",
            "-s",
            metavar="SEL",
            help="Stages to build: name, +name (with upstream), "
            "name+ (with downstream); repeat or comma-separate.",
        ),
    ] = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Rebuild selected stages from scratch.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and build nothing.")
    ] = False,
    source: Annotated[
        str | None,
        typer.Option(
            "--source", metavar="DIR", help="BBBC021-layout folder to load (default: the demo)."
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            metavar="ADDRESS",
            help="dask scheduler: tcp://host:port, or inline (default: a local cluster).",
        ),
    ] = None,
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Build what changed, in DAG order.

    Only stages whose code, settings or inputs changed are rebuilt.

    Each stage commits its tables, checks and run record as one DuckLake snapshot; a failing
    stage publishes nothing, its downstream stages are blocked, and the exit code is 1. The
    summary lists rejected rows per table and reason, checks that warned, and what failed.
    In a log (output not a terminal) each running stage prints a progress line every 30 s.

    \b
    cellstore build --dry-run
    cellstore build --select +moa_accuracy
    """
    from cellstore.cli.progress import make_reporter, missing_sources, print_plan, print_summary
    from cellstore.engine.config import load_config
    from cellstore.engine.project import load_project
    from cellstore.engine.runner import Runner

    cfg = load_config(project, config, warehouse)
    proj = load_project(project)
    overrides: dict[str, Any] = {}
    if source is not None:
        overrides["source"] = str(Path(source).resolve()) if source else ""
    if scheduler is not None:
        overrides["scheduler"] = scheduler
    with make_reporter(console) as reporter:
        runner = Runner(proj, cfg, overrides=overrides, reporter=reporter)
        if dry_run:
            print_plan(console, runner.plan(select, full_refresh))
            problems = missing_sources(runner.settings, cfg.project_dir)
            if problems:
                fail("; ".join(problems))
            return
        result = runner.build(select, full_refresh)
    outputs = {name: list(stage.outputs) for name, stage in proj.stages.items()}
    print_summary(console, result, runner.warehouse, outputs)
    if result.unrecorded:
        err_console.print(
            f"[yellow]warning:[/] failed runs not recorded in the run history: "
            f"{escape(result.unrecorded)}",
            highlight=False,
            soft_wrap=True,
        )
    failure = result.first_failure()
    if failure is not None:
        fail(failure.error or f"stage {failure.stage} failed")


@app.command()
def sql(
    query: Annotated[
        str,
        typer.Argument(metavar="QUERY", help="A read-only DuckDB query over the warehouse."),
    ],
    at: Annotated[
        int | None,
        typer.Option(
            "--at", metavar="SNAPSHOT", help="Query the warehouse as of this snapshot id."
        ),
    ] = None,
    format: Annotated[
        str,
        typer.Option("--format", "-f", metavar="FORMAT", help="table, csv, json or parquet."),
    ] = "table",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="PATH", help="Write to this file, not stdout."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", help="Rows shown by --format table (0: all).")
    ] = 50,
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run a read-only SQL query (writes are refused).

    Tables are read by plain name; --at reads the warehouse as of an older snapshot.

    \b
    cellstore sql "select feature_source, postprocessing, nsc, nscb from moa_accuracy"
    cellstore sql "select * from moa_accuracy" --format csv --out accuracy.csv
    """
    from cellstore.engine.query import run_query

    wh = open_warehouse(warehouse, config)
    run_query(wh, query, at=at, fmt=format, out=out, limit=limit, console=console)


@app.command("ls")
def list_tables(warehouse: WarehouseOpt = None, config: ConfigOpt = None) -> None:
    """List tables with rows, snapshot, time and stage.

    For each table: its rows, the snapshot that last wrote it, when, and by which stage.

    \b
    cellstore ls --warehouse warehouse
    """
    from cellstore.engine.inspect import print_tables

    print_tables(console, open_warehouse(warehouse, config))


@app.command()
def history(
    table: Annotated[str, typer.Argument(metavar="TABLE", help="Table (or stage) name.")],
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Every run of the stage that writes TABLE.

    One row per run: snapshot, status, rows, duration, time and error.

    \b
    cellstore history images
    """
    from cellstore.engine.inspect import print_history

    print_history(console, open_warehouse(warehouse, config), table)


@app.command("dag")
def show_dag(project: ProjectOpt = Path(".")) -> None:
    """Print the stages in build order with what each reads.

    \b
    cellstore dag
    """
    from cellstore.engine.inspect import print_dag
    from cellstore.engine.project import load_project

    print_dag(console, load_project(project))


@app.command()
def gc(
    older_than_days: Annotated[
        float,
        typer.Option(
            "--older-than-days",
            metavar="N",
            show_default=False,
            help="Also expire snapshots older than N days (default: expire none).",
        ),
    ] = -1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would go.")] = False,
    wait: Annotated[
        float,
        typer.Option("--wait", help="Seconds to wait for a running build (default: refuse)."),
    ] = 0,
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Delete unreferenced files and the scratch of finished builds.

    Unreferenced Parquet files are left by killed builds or expired snapshots; scratch folders
    by builds that are no longer running.

    gc takes the build lock: while a build runs it refuses (or waits --wait seconds), because
    the build's uncommitted files look unreferenced until it commits. By default no snapshot
    is expired, so time travel keeps working; pass --older-than-days to also drop old
    snapshots and their files.

    \b
    cellstore gc --dry-run
    """
    from cellstore.engine.inspect import collect_garbage

    collect_garbage(console, open_warehouse(warehouse, config), older_than_days, dry_run, wait)


def _register_subcommands() -> None:
    """Each module in cellstore/cli/commands/ adds the command named like it."""
    import cellstore.cli.commands as package

    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"cellstore.cli.commands.{info.name}")
        func = getattr(module, info.name, None)
        if callable(func):
            app.command(info.name)(func)


_register_subcommands()


def main() -> None:
    """Entry point: user-facing errors become one line and exit code 1."""
    try:
        code = app(standalone_mode=False)
    except CellstoreError as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:
        # Usage errors from typer's vendored click: print them as click would, no traceback.
        show, exit_code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            sys.exit(exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
