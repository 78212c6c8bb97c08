"""Single-cell crops: one normalised 3-channel square box per nucleus, stored as uint8 bytes."""

from __future__ import annotations

from typing import Any

from cellstore.imaging.columns import FIELD_COLUMNS
from cellstore.parallel import RUNTIME_SETTINGS
from cellstore.stage import Parts, stage


@stage(
    outputs=["crops", "crops_rejected"],
    incremental="image_id",
    compare=FIELD_COLUMNS,  # a field's source_row or image_number may shift: not its pixels
    partitions={"nuclei": "image_id", "illumination": "plate"},
    files=["nuclei"],  # the driver reads each plate's nuclei from their Parquet files
    unhashed=RUNTIME_SETTINGS,
)
def crops(
    images: Any,
    nuclei: Any,
    illumination: Any,
    ctx: Any,
    *,
    scheduler: str = "",
    workers: int = 0,
    batch_size: int = 16,
    box: int = 96,
    border: str = "pad",
    normalization: str = "plate",
    percentiles: tuple[float, float] = (0.1, 99.9),
    reference_width: int = 1280,
) -> dict[str, Any]:
    """One crop per nucleus. Grain: cell_id (as in `nuclei`).

    crop: C-order uint8 bytes of shape (3, box, box), channels DAPI, Tubulin, Actin (the
    `shape` and `dtype` columns say so; `cellstore.imaging.crops.read_crops` rebuilds a
    batch). `box` is in px of a `reference_width`-wide image (96 → 48 at half scale).
    Intensities: illumination-corrected, then per channel [low, high] → [0, 255], with
    (low, high) from the plate's `illumination` row (normalization="plate") or from
    `percentiles` of the field itself ("image"). Border rule: "pad" keeps the box centred on
    the nucleus and fills pixels outside the image with 0; "shift" moves the box inside the
    image. `is_border` marks crops whose centred box reached past the edge either way.
    Fields whose files cannot be read any more go to `crops_rejected`.
    """
    from cellstore.imaging.crops import BORDER_RULES
    from cellstore.imaging.driver import run_field_tasks
    from cellstore.imaging.fields import Geometry
    from cellstore.imaging.tasks import CropSettings, crops_schema, crops_task
    from cellstore.parallel import task_pool

    if border not in BORDER_RULES:
        raise ValueError(f"crops: border must be one of {BORDER_RULES}, got {border!r}")
    if normalization not in ("plate", "image"):
        raise ValueError(f"crops: normalization must be 'plate' or 'image', got {normalization!r}")
    settings = CropSettings(
        box=box,
        border=border,
        normalization=normalization,
        percentiles=(float(percentiles[0]), float(percentiles[1])),
        geometry=Geometry(reference_width),
    )
    with task_pool(scheduler, workers) as pool:
        run = run_field_tasks(
            images,
            illumination,
            crops_task,
            settings,
            pool=pool,
            parts_dir=ctx.parts_dir,
            prefix="crops",
            schema=crops_schema(),
            centres=nuclei,
            batch_size=batch_size,
            progress=ctx.progress,
        )
    return {"crops": Parts(run.parts), "crops_rejected": run.rejected_table()}
