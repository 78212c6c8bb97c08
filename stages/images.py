"""One row per field of view of the source, and every metadata row it had to reject."""

from __future__ import annotations

from typing import Any

from cellstore.sources import load_images
from cellstore.stage import StageContext, stage
from cellstore.synth import resolve_source, source_digest


def _source_state(settings: dict[str, Any], ctx: StageContext) -> str:
    project_dir = getattr(ctx.config, "project_dir", None)
    return source_digest(settings["source"], ctx.cache_dir, project_dir)


@stage(outputs=["images", "images_rejected"], watch=_source_state)
def images(*, source: str = "", dtype: str = "uint16", ctx: StageContext) -> dict:
    """Fields of view of a BBBC021-layout source. Grain: image_id (plate, well, site).

    source: folder holding BBBC021_v1_image.csv, BBBC021_v1_moa.csv and the plate folders;
    empty builds the embedded synthetic demo (generated once into the warehouse cache).
    dtype: the pixel type every channel file must have.
    Rows that fail (bad metadata, duplicate field, missing / unreadable / truncated TIFF,
    wrong shape or dtype) go to `images_rejected` with a reason: input = images + rejected.
    """
    project_dir = getattr(ctx.config, "project_dir", None)
    folder = resolve_source(source, ctx.cache_dir, project_dir, ctx.progress)
    accepted, rejected = load_images(folder, dtype=dtype)
    return {"images": accepted, "images_rejected": rejected}
