"""Handcrafted CellProfiler-like features per cell: shape, intensity, texture, correlation."""

from __future__ import annotations

from typing import Any

from cellstore.imaging.columns import FIELD_COLUMNS
from cellstore.parallel import RUNTIME_SETTINGS
from cellstore.stage import Parts, stage


@stage(
    outputs=["cell_features", "cell_features_rejected"],
    incremental="image_id",
    compare=FIELD_COLUMNS,  # a field's source_row or image_number may shift: not its pixels
    partitions={"nuclei": "image_id", "illumination": "plate"},
    files=["nuclei"],  # the driver reads each plate's nuclei from their Parquet files
    unhashed=RUNTIME_SETTINGS,
)
def cell_features(
    images: Any,
    nuclei: Any,
    illumination: Any,
    ctx: Any,
    *,
    scheduler: str = "",
    workers: int = 0,
    batch_size: int = 8,
    nucleus_diameter: float = 20.0,
    cell_max_distance: float = 1.5,
    texture_distance: int = 3,
    texture_levels: int = 16,
    reference_width: int = 1280,
) -> dict[str, Any]:
    """Wide float32 features per cell. Grain: cell_id (as in `nuclei`).

    Nuclei are regrown from the recorded centres (watershed on the DAPI distance transform),
    cells propagated from them over Tubulin + Actin (at most `cell_max_distance` nucleus
    diameters beyond the nucleus), cytoplasm = cell − nucleus. Columns are named
    CellProfiler-style `<Nuclei|Cells|Cytoplasm>_<Module>_<Feature>[_<Channel>]`:
    AreaShape (8 per nucleus and cell, cytoplasm area), Intensity (6 per compartment ×
    channel, on illumination-corrected images scaled to [0, 1]), Haralick Texture (6 per
    nucleus/cell × channel, 16 gray levels over the plate's intensity limits, distance
    `texture_distance` px at `reference_width`), channel Correlation, adjacent neighbours.
    """
    from cellstore.imaging.driver import run_field_tasks
    from cellstore.imaging.fields import Geometry
    from cellstore.imaging.tasks import FeatureSettings, features_schema, features_task
    from cellstore.parallel import task_pool

    settings = FeatureSettings(
        nucleus_diameter=nucleus_diameter,
        cell_max_distance=cell_max_distance,
        texture_distance=texture_distance,
        texture_levels=texture_levels,
        geometry=Geometry(reference_width),
    )
    with task_pool(scheduler, workers) as pool:
        run = run_field_tasks(
            images,
            illumination,
            features_task,
            settings,
            pool=pool,
            parts_dir=ctx.parts_dir,
            prefix="cell_features",
            schema=features_schema(),
            centres=nuclei,
            batch_size=batch_size,
            progress=ctx.progress,
        )
    return {
        "cell_features": Parts(run.parts),
        "cell_features_rejected": run.rejected_table(),
    }
