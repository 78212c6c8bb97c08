"""`cellstore sql`: read-only queries over the warehouse, now or at a past snapshot."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
from rich.console import Console
from rich.table import Table

from cellstore.engine.warehouse import Warehouse
from cellstore.errors import CellstoreError

READ_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
FORMATS = ("table", "csv", "json", "parquet")


def check_read_only(query: str) -> None:
    """Refuse anything but reads, before touching the warehouse."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise CellstoreError(f"query does not parse: {str(exc).splitlines()[0]}") from None
    if not statements:
        raise CellstoreError("empty query")
    for statement in statements:
        if statement.type not in READ_STATEMENTS:
            kind = statement.type.name
            raise CellstoreError(
                f"cellstore sql is read-only: {kind} statements are refused "
                "(tables are written by `cellstore build`)"
            )


def run_query(
    warehouse: Warehouse,
    query: str,
    *,
    at: int | None = None,
    fmt: str = "table",
    out: Path | None = None,
    limit: int = 50,
    console: Console | None = None,
) -> None:
    """Run `query` and print or write its result in `fmt`."""
    if fmt not in FORMATS:
        raise CellstoreError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "parquet" and out is None:
        raise CellstoreError("--format parquet needs --out FILE")
    check_read_only(query)
    con = warehouse.connect(read_only=True, snapshot=at)
    statements = duckdb.extract_statements(query)
    try:
        for statement in statements[:-1]:
            con.execute(statement.query)
        _emit(con, statements[-1].query, fmt, out, limit, console or Console())
    except duckdb.Error as exc:
        raise CellstoreError(f"query failed: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def _emit(
    con: duckdb.DuckDBPyConnection,
    query: str,
    fmt: str,
    out: Path | None,
    limit: int,
    console: Console,
) -> None:
    if out is not None:
        out = out.resolve()
        tmp = out.with_name(out.name + ".partial")
        options = {
            "parquet": "format parquet",
            "csv": "format csv, header true",
            "json": "format json, array true",
        }.get(fmt)
        if options is None:  # a text table written to a file
            tmp.write_text(con.sql(query).df().to_string(index=False) + "\n")
        else:
            con.execute(f"copy ({query}) to '{_escape(tmp)}' ({options})")
        tmp.replace(out)  # atomic: a crash never leaves half a file under the real name
        console.print(f"wrote {out}", highlight=False)
        return
    relation = con.sql(query)
    if fmt == "csv":
        relation.df().to_csv(sys.stdout, index=False)
    elif fmt == "json":
        sys.stdout.write(relation.df().to_json(orient="records", date_format="iso") + "\n")
    else:
        console.print(_rich_table(relation, limit))


def _escape(path: Path) -> str:
    return str(path).replace("'", "''")


def _rich_table(relation: duckdb.DuckDBPyRelation, limit: int) -> Table:
    rows = relation.fetchall() if limit <= 0 else relation.limit(limit + 1).fetchall()
    table = Table(*relation.columns)
    for row in rows[: limit or None]:
        table.add_row(*(_cell(v) for v in row))
    if limit and len(rows) > limit:
        table.caption = f"first {limit} rows (use --limit 0 for all, or --format csv)"
    return table


def _cell(value: object) -> str:
    if value is None:
        return "[dim]NULL[/]"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."
