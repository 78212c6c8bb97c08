"""CLI options shared by every command that opens a warehouse."""

from pathlib import Path
from typing import Annotated

import typer

WarehouseOpt = Annotated[
    Path | None,
    typer.Option(
        "--warehouse",
        "-w",
        metavar="DIR",
        help="Warehouse folder (default: config, else ./warehouse).",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", metavar="FILE", help="Config file (default: ./cellstore.toml)."),
]
ProjectOpt = Annotated[
    Path,
    typer.Option(
        "--project",
        metavar="DIR",
        show_default=False,
        help="Project folder holding sql/, stages/, schemas/ (default: .).",
    ),
]
