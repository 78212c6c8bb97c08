"""What every command shares: the consoles, one-line failures, opening the warehouse."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

# Piped output (scripts, CI logs) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


def fail(message: str) -> None:
    """Print one clear line and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def open_warehouse(warehouse: Path | None, config: Path | None, project: Path = Path(".")):
    """The configured warehouse (read side: it must exist)."""
    from cellstore.engine.config import load_config
    from cellstore.engine.warehouse import Warehouse

    cfg = load_config(project, config, warehouse)
    return Warehouse(cfg.warehouse, cfg.catalog, cfg.data_path)
