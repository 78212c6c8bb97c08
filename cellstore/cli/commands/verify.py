"""`cellstore verify [TABLE] [--at SNAPSHOT]`: are the snapshot's data files all there and whole?"""

from __future__ import annotations

from typing import Annotated

import typer

from cellstore.cli.options import ConfigOpt, WarehouseOpt


def verify(
    table: Annotated[
        str | None, typer.Argument(help="Only this table's files (default: every table).")
    ] = None,
    at: Annotated[
        int | None, typer.Option("--at", help="Verify this snapshot instead of the latest.")
    ] = None,
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Confirm the snapshot's data files exist and are whole.

    Every Parquet file the snapshot references must exist with its recorded size and a
    readable footer (read-only). Exits 1 naming each damaged file and the command that
    rebuilds its table.

    \b
    cellstore verify
    cellstore verify images
    """
    from rich.markup import escape

    from cellstore.cli.common import console, err_console, open_warehouse
    from cellstore.engine.verify import repair_hint, verify_files
    from cellstore.engine.warehouse import table_names
    from cellstore.errors import CellstoreError

    wh = open_warehouse(warehouse, config)
    con = wh.connect(read_only=True, snapshot=at)
    try:
        if table is not None and table not in table_names(con):
            raise CellstoreError(f"no table {table!r} in {wh.root}")
        files, damage = verify_files(con, at, tables={table} if table else None)
    finally:
        con.close()
    where = f"snapshot {at}" if at is not None else "the latest snapshot"
    for item in damage:
        err_console.print(
            f"[bold red]damaged:[/] {escape(item.table)}: {escape(item.file.path)} "
            f"{escape(item.problem)}",
            highlight=False,
            soft_wrap=True,
        )
    tables = sorted({d.table for d in damage})
    n_tables = len({(f.schema, f.table) for f in files})
    console.print(
        f"{len(files)} file(s) of {n_tables} table(s) at {where}: "
        f"{len(files) - len(damage)} ok, {len(damage)} damaged",
        highlight=False,
    )
    if damage:
        for name in tables:
            hint = escape(repair_hint(name))
            err_console.print(f"repair {escape(name)}: {hint}", highlight=False)
        raise typer.Exit(1)
