"""`cellstore synth`: write a synthetic source in the real BBBC021 layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def synth(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", metavar="DIR", help="Folder to write the source into."),
    ],
    plates: Annotated[
        str,
        typer.Option(
            metavar="PLATES",
            help="'all', or comma-separated plate names (e.g. Week4_27481,Week4_27521).",
        ),
    ] = "all",
    sites: Annotated[
        int | None,
        typer.Option(metavar="N", help="Sites per well, 1-4 (default: all 4, as the real data)."),
    ] = None,
    scale: Annotated[
        float,
        typer.Option(metavar="F", help="Image scale: 1 writes 1280x1024, 0.5 writes 640x512."),
    ] = 1.0,
    seed: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Random seed; same seed, same pixels. A seed is a replicate of the same "
            "screen: the compounds, the Weeks' biology and most of their imaging set-up "
            "stay; the plates, wells and cells are drawn again.",
        ),
    ] = 0,
    wells: Annotated[
        str,
        typer.Option(
            metavar="WELLS", help="'all' wells, or 'annotated' (treatments with a MoA, and DMSO)."
        ),
    ] = "all",
    batch_strength: Annotated[
        float,
        typer.Option(
            metavar="F",
            help="Strength of the Week (batch) effects on phenotypes: 1 is calibrated against "
            "the real screen, 0 removes them, 2 doubles them (NSCB falls).",
        ),
    ] = 1.0,
    heterogeneity: Annotated[
        float,
        typer.Option(
            metavar="F",
            help="Spread between compounds of one MoA: 1 is calibrated, 0 makes them "
            "identical up to potency, higher makes them less alike.",
        ),
    ] = 1.0,
    workers: Annotated[
        int, typer.Option(metavar="N", help="Processes rendering plates in parallel.")
    ] = 1,
    force: Annotated[
        bool, typer.Option("--force", help="Write into a folder that already holds a source.")
    ] = False,
) -> None:
    """Write a synthetic source in the real BBBC021 layout.

    Plates are driven by the real metadata. The folder gets BBBC021_v1_image.csv (the chosen
    rows of the real file), BBBC021_v1_moa.csv,
    WeekN/WeekN_PLATE/*.tif (16-bit, 3 channels per field), and ground truth beside them:
    ground_truth/nuclei.parquet (nucleus centres in pixels), ground_truth/wells.parquet (the
    phenotype model's parameters per well), cellstore_synth.json (a summary). Point
    `cellstore build --source DIR` at it.

    \b
    cellstore synth --out synthetic --plates Week1_22123 --sites 1 --scale 0.25
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from cellstore.errors import CellstoreError
    from cellstore.sources.bbbc021 import IMAGE_CSV
    from cellstore.synth import generate

    if (out / IMAGE_CSV).exists() and not force:
        raise CellstoreError(
            f"{out} already holds a source ({IMAGE_CSV}); pass --force to overwrite"
        )
    chosen = (
        None
        if plates.strip().lower() == "all"
        else [name.strip() for name in plates.split(",") if name.strip()]
    )
    console = Console(stderr=True)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("fields", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            summary = generate(
                out,
                plates=chosen,
                sites=sites,
                scale=scale,
                seed=seed,
                wells=wells,
                batch_strength=batch_strength,
                heterogeneity=heterogeneity,
                workers=workers,
                progress=progress,
            )
        except ValueError as exc:
            raise CellstoreError(f"cellstore synth: {exc}") from exc
    typer.echo(
        f"wrote {summary['n_fields']} fields ({summary['n_images']} TIFFs, "
        f"{summary['image_width']}x{summary['image_height']}) of {summary['n_wells']} wells on "
        f"{summary['n_plates']} plates, {summary['n_nuclei']} nuclei, in "
        f"{summary['seconds']:.1f} s → {out}"
    )
