"""Illumination functions per plate × channel: mean image, downscaled ×4, median-filtered."""

from __future__ import annotations

from typing import Any

from cellstore.imaging.columns import FIELD_COLUMNS
from cellstore.parallel import RUNTIME_SETTINGS
from cellstore.stage import stage


@stage(incremental="plate", compare=FIELD_COLUMNS, unhashed=RUNTIME_SETTINGS)
def illumination(
    images: Any,
    ctx: Any,
    *,
    scheduler: str = "",
    workers: int = 0,
    batch_size: int = 16,
    downscale: int = 4,
    median_size: int = 15,
    percentiles: tuple[float, float] = (0.1, 99.9),
    normalization_sample: int = 8,
    reference_width: int = 1280,
    max_saturated_fraction: float = 0.05,
) -> Any:
    """One illumination function per (plate, channel). Grain: (plate, channel).

    function = mean of the plate's fields, block-mean downscaled by `downscale`, median
    filtered (`median_size` downscaled px at `reference_width`, scaled with the image width)
    and scaled to mean 1; stored as float32 bytes with `shape` and `dtype`. Fields failing
    the quality checks are left out (`n_rejected`). `intensity_low` / `intensity_high` are
    `percentiles` of corrected intensities over `normalization_sample` fields of the plate:
    the crops stage maps them to 0 and 255. Incremental on plate: adding plates computes only
    theirs, and a plate whose fields changed (one added, say) is recomputed.
    """
    from cellstore.imaging.driver import IlluminationSettings, build_illumination
    from cellstore.imaging.fieldio import QualityLimits
    from cellstore.parallel import task_pool

    settings = IlluminationSettings(
        downscale=downscale,
        median_size=median_size,
        percentiles=(float(percentiles[0]), float(percentiles[1])),
        sample=normalization_sample,
        reference_width=reference_width,
        quality=QualityLimits(max_saturated_fraction),
    )
    with task_pool(scheduler, workers) as pool:
        return build_illumination(
            images, settings, pool=pool, batch_size=batch_size, progress=ctx.progress
        )
