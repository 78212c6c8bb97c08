"""`cellstore migrate`: copy a SQLite-catalogued warehouse, with its history, to Postgres."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellstore.cli.options import ConfigOpt, WarehouseOpt


def migrate(
    to: Annotated[
        str,
        typer.Option("--to", help="Target catalog 'postgres:<libpq dsn>' (an empty database)."),
    ],
    data_path: Annotated[
        Path,
        typer.Option("--data-path", help="New (empty) folder the Parquet files are copied to."),
    ],
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Copy the warehouse, with its history, to a Postgres catalog.

    Every snapshot, run record and check result is copied.

    The source is left untouched. Afterwards point cellstore.toml at the new catalog:
    catalog = "postgres:<dsn>" and data_path = "<the --data-path folder>".

    \b
    cellstore migrate --to "postgres:dbname=lake host=db.lab" --data-path /shared/lake/
    """
    from cellstore.cli.common import console, open_warehouse
    from cellstore.engine.migrate import migrate_to_postgres
    from cellstore.engine.warehouse import Warehouse

    source = open_warehouse(warehouse, config)
    folder = str(data_path.absolute()).rstrip("/") + "/"
    target = Warehouse(source.root, to, folder)
    summary = migrate_to_postgres(source, target)
    console.print(
        f"copied {summary.n_snapshots} snapshots, {summary.n_tables} tables and "
        f"{summary.n_files} data files to {target.label}, data in {summary.data_path}",
        highlight=False,
    )
