"""`cellstore export`: one warehouse table to a Parquet or CSV file for downstream analysts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellstore.cli.options import ConfigOpt, WarehouseOpt


def export(
    table: Annotated[
        str, typer.Argument(metavar="TABLE", help="Table to export, e.g. treatment_profiles.")
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", metavar="PATH", help="File to write (see the name rule)."),
    ],
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT",
            help="parquet, csv or csv.gz (default: from the --out name).",
        ),
    ] = None,
    at: Annotated[
        int | None,
        typer.Option("--at", metavar="SNAPSHOT", help="Export the table as of this snapshot."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    feature_source: Annotated[
        str | None,
        typer.Option(
            "--feature-source",
            metavar="NAME",
            help="Only rows of this feature source (an error if none).",
        ),
    ] = None,
    postprocessing: Annotated[
        str | None,
        typer.Option(
            "--postprocessing",
            metavar="NAME",
            help="Only rows of this post-processing variant (an error if none).",
        ),
    ] = None,
    warehouse: WarehouseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Export a table for analysts (pycytominer layout for profiles).

    The file is written atomically; an existing file is kept unless --force.

    Profile tables (a `features` vector per row) are written in pycytominer layout:
    Metadata_ columns (Metadata_Plate, Metadata_Compound, Metadata_MoA, Metadata_Batch, ...)
    then one column per feature, named from feature_sets. Other tables are written as stored.

    Feature sources have different features, so a profile table that holds several is
    written as one file per source, each a complete profile matrix: --out profiles.parquet
    gives profiles.handcrafted.parquet, profiles.cellprofiler_ljosa2013.parquet, ...
    A --feature-source or --postprocessing value that matches no row is an error.

    \b
    cellstore export treatment_profiles --out profiles.parquet
    cellstore export well_profiles_normalized --out wells.csv.gz --postprocessing tvn
    """
    from cellstore.cli.common import console, open_warehouse
    from cellstore.profiling.export import export_table

    con = open_warehouse(warehouse, config).connect(read_only=True, snapshot=at)
    try:
        summaries = export_table(
            con,
            table,
            out,
            fmt=format,
            force=force,
            feature_source=feature_source,
            postprocessing=postprocessing,
        )
    finally:
        con.close()
    for summary in summaries:
        layout = "pycytominer profile layout" if summary.is_profile else "as stored"
        console.print(
            f"wrote {summary.rows} rows x {summary.columns} columns of {table} to "
            f"{summary.path} ({summary.format}, {layout})",
            highlight=False,
            soft_wrap=True,
        )
