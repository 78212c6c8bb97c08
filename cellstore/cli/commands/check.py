"""`cellstore check [TABLE]`: re-run table contracts on what is committed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellstore.cli.options import ConfigOpt, ProjectOpt, WarehouseOpt


def check(
    table: Annotated[
        str | None,
        typer.Argument(
            metavar="TABLE",
            show_default=False,
            help="Table to check (default: every table and contract).",
        ),
    ] = None,
    failures_only: Annotated[
        bool, typer.Option("--failures-only", help="List only checks that failed.")
    ] = False,
    output: Annotated[
        str,
        typer.Option(
            "--format", "-f", metavar="FORMAT", help="table, or json (one object per check)."
        ),
    ] = "table",
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Re-run data-quality checks on what is committed.

    Checks tables against schemas/<table>.yml, read-only (nothing is recorded). Prints one
    row per check and exits 1 when an error-severity check fails. A table without a
    contract, or a contract whose table is not built yet, is a warning.

    \b
    cellstore check --failures-only
    cellstore check images --format json
    """
    import json
    import sys

    from rich.console import Console

    from cellstore.checks import contracted_tables, run_table_checks
    from cellstore.checks.results import failed_result
    from cellstore.engine.config import load_config
    from cellstore.engine.warehouse import Warehouse, table_names
    from cellstore.errors import CellstoreError

    if output not in ("table", "json"):
        raise CellstoreError(f"--format must be table or json, not {output!r}")
    cfg = load_config(project, config, warehouse)
    schema_dir = project / "schemas"
    con = Warehouse(cfg.warehouse, cfg.catalog, cfg.data_path).connect(read_only=True)
    try:
        built = table_names(con)
        if table is not None and table not in built:
            known = ", ".join(sorted(built)) or "none"
            raise CellstoreError(f"no table {table!r} in {cfg.warehouse} (tables: {known})")
        tables = [table] if table else sorted(built | set(contracted_tables(schema_dir)))
        results = []
        for name in tables:
            if name not in built:
                results.append(
                    failed_result(
                        name,
                        "schema.table_exists",
                        "warn",
                        0,
                        f"contract {schema_dir / name}.yml has no table in the warehouse yet",
                    )
                )
            else:
                results.extend(run_table_checks(con, name, schema_dir))
    finally:
        con.close()

    shown = [r for r in results if not r.passed] if failures_only else results
    # Piped output is not cut at 80 columns: check names and samples stay on one line.
    console = Console() if sys.stdout.isatty() else Console(width=240)
    if output == "json":
        for r in shown:
            typer.echo(
                json.dumps(
                    {
                        "table": r.table,
                        "check": r.check,
                        "severity": r.severity,
                        "passed": r.passed,
                        "n_failing": r.n_failing,
                        "sample": r.sample,
                        "message": r.message,
                    }
                )
            )
    elif shown:
        _print_table(console, shown)
    n_errors = sum(r.blocking for r in results)
    n_warnings = sum(not r.passed and r.severity == "warn" for r in results)
    summary = (
        f"{len(results)} checks on {len(tables)} table(s): "
        f"{len(results) - n_errors - n_warnings} passed, {n_warnings} warnings, "
        f"{n_errors} errors"
    )
    typer.echo(summary, err=output == "json")
    if n_errors:
        raise typer.Exit(1)


def _print_table(console, results) -> None:  # noqa: ANN001 (rich types imported lazily)
    from rich.markup import escape
    from rich.table import Table

    view = Table(show_lines=False, expand=False)
    for heading in ("table", "check", "severity", "status", "failing", "detail"):
        view.add_column(heading, overflow="fold", no_wrap=heading != "detail")
    for r in results:
        status = (
            "[green]pass[/]"
            if r.passed
            else ("[bold red]FAIL[/]" if r.severity == "error" else "[yellow]warn[/]")
        )
        detail = "" if r.passed else escape(r.message.split(f"failed ({r.severity}): ", 1)[-1])
        view.add_row(r.table, escape(r.check), r.severity, status, str(r.n_failing), detail)
    console.print(view)
