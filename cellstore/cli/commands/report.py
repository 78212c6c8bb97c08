"""`cellstore report`: an offline HTML page with PNG plots of the evaluation tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellstore.cli.options import ConfigOpt, WarehouseOpt


def report(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", metavar="DIR", help="Folder for index.html and PNGs."),
    ] = Path("report"),
    postprocessing: Annotated[
        str | None,
        typer.Option(
            "--postprocessing",
            metavar="NAME",
            help="Variant for confusion matrices and maps (default: best NSC per source).",
        ),
    ] = None,
    at: Annotated[
        int | None,
        typer.Option("--at", metavar="SNAPSHOT", help="Report on the warehouse as of then."),
    ] = None,
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Write an offline HTML report with PNG plots.

    index.html and its PNGs go into --out: the accuracy table (NSC, NSCB, drop, mAP), a
    confusion matrix per feature source, a 2-D map
    of treatment profiles coloured by MoA, well profiles by batch before and after
    correction, and cells per well. Sections whose table is not built are noted, not fatal.

    \b
    cellstore report --out report
    """
    from rich.console import Console

    from cellstore.cli.common import open_warehouse
    from cellstore.profiling.report import write_report

    store = open_warehouse(warehouse, config)
    con = store.connect(read_only=True, snapshot=at)
    try:
        snapshot = con.execute("select max(snapshot_id) from ducklake_snapshots('lake')").fetchone()
        summary = write_report(
            con,
            out,
            postprocessing=postprocessing,
            subtitle=f"warehouse {store.root}, snapshot {at if at is not None else snapshot[0]}",
        )
    finally:
        con.close()
    Console().print(f"wrote {summary.html} with {len(summary.images)} plots", highlight=False)
