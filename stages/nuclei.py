"""Nuclei detected on DAPI (illumination-corrected), one row per nucleus; bad fields rejected."""

from __future__ import annotations

from typing import Any

from cellstore.imaging.columns import FIELD_COLUMNS
from cellstore.parallel import RUNTIME_SETTINGS
from cellstore.stage import Parts, stage


@stage(
    outputs=["nuclei", "nuclei_rejected"],
    incremental="image_id",
    compare=FIELD_COLUMNS,  # a field's source_row or image_number may shift: not its pixels
    partitions={"illumination": "plate"},  # a plate's illumination changed: redo its fields
    unhashed=RUNTIME_SETTINGS,
)
def nuclei(
    images: Any,
    illumination: Any,
    ctx: Any,
    *,
    scheduler: str = "",
    workers: int = 0,
    batch_size: int = 16,
    nucleus_diameter: float = 20.0,
    reference_width: int = 1280,
    max_saturated_fraction: float = 0.05,
) -> dict[str, Any]:
    """Nucleus centres, area and DAPI intensity. Grain: cell_id = "{image_id}_{object_number}".

    `nucleus_diameter` is in px of a `reference_width`-wide image (scaled with each field's
    width). Touching nuclei are split by a distance-transform watershed. Every field is
    either in `nuclei` or in `nuclei_rejected` with a reason: unreadable, shape_mismatch,
    not_finite, blank, saturated (> `max_saturated_fraction` of a channel at the maximum)
    or no_nuclei (a readable field where nothing was found, e.g. all cells dead).
    """
    from cellstore.imaging.driver import run_field_tasks
    from cellstore.imaging.fieldio import QualityLimits
    from cellstore.imaging.fields import Geometry
    from cellstore.imaging.tasks import NucleiSettings, nuclei_schema, nuclei_task
    from cellstore.parallel import task_pool

    settings = NucleiSettings(
        nucleus_diameter=nucleus_diameter,
        geometry=Geometry(reference_width),
        quality=QualityLimits(max_saturated_fraction),
    )
    with task_pool(scheduler, workers) as pool:
        run = run_field_tasks(
            images,
            illumination,
            nuclei_task,
            settings,
            pool=pool,
            parts_dir=ctx.parts_dir,
            prefix="nuclei",
            schema=nuclei_schema(),
            batch_size=batch_size,
            progress=ctx.progress,
        )
    return {"nuclei": Parts(run.parts), "nuclei_rejected": run.rejected_table()}
