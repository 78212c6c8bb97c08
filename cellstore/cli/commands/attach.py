"""`cellstore attach`: the SQL (or Python) that opens the warehouse from a plain DuckDB session."""

from __future__ import annotations

from typing import Annotated

import typer

from cellstore.cli.options import ConfigOpt, WarehouseOpt


def attach_statements(store, snapshot: int | None = None) -> list[str]:  # noqa: ANN001
    """Statements that attach `store` read-only as `lake` in any DuckDB 1.5.5 session.

    The extensions load by path from the installed wheels, and autoinstall is off, so a
    session without network never tries to download anything.
    """
    from cellstore.engine.warehouse import LAKE, _extension_path

    def literal(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    store.require()
    statements = [
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
        f"LOAD {literal(_extension_path('duckdb_extension_ducklake', 'ducklake'))}",
    ]
    if store.catalog == "sqlite":
        path = _extension_path("duckdb_extension_sqlite_scanner", "sqlite_scanner")
        statements.append(f"LOAD {literal(path)}")
    options = ["READ_ONLY", f"DATA_PATH {literal(store.data_dir)}"]
    if store.data_path is None:
        options.append("OVERRIDE_DATA_PATH true")  # as cellstore opens it: data/ beside it
    if snapshot is not None:
        options.append(f"SNAPSHOT_VERSION {int(snapshot)}")
    statements.append(f"ATTACH {literal(store.catalog_uri())} AS {LAKE} ({', '.join(options)})")
    statements.append(f"USE {LAKE}")
    return statements


def python_snippet(statements: list[str]) -> str:
    """A Python snippet that needs only the duckdb package (and the two extension wheels)."""
    lines = [
        "import duckdb",
        "",
        "con = duckdb.connect()",
        *(f"con.execute({statement!r})" for statement in statements),
        'print(con.sql("select * from moa_accuracy"))',
    ]
    return "\n".join(lines)


def attach(
    python: Annotated[
        bool,
        typer.Option("--python", help="Print a Python snippet (plain duckdb) instead of SQL."),
    ] = False,
    at: Annotated[
        int | None,
        typer.Option("--at", metavar="SNAPSHOT", help="Attach the warehouse as of then."),
    ] = None,
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print SQL that opens the warehouse from plain DuckDB.

    The statements attach the warehouse read-only, loading the DuckLake and SQLite
    extensions from the installed wheels, so nothing is downloaded. Paste them into the
    duckdb shell or any DuckDB 1.5.5 client; tables are then read by
    plain name, and older snapshots with AT (VERSION => n). In Python, with cellstore
    installed, `cellstore.connect("warehouse")` returns the same read-only connection.

    \b
    cellstore attach > attach.sql
    cellstore attach --python > open_warehouse.py && python open_warehouse.py
    """
    from cellstore.cli.common import open_warehouse

    statements = attach_statements(open_warehouse(warehouse, config), at)
    if python:
        typer.echo(python_snippet(statements))
    else:
        typer.echo("\n".join(f"{statement};" for statement in statements))
