"""The mechanism-of-action annotation of the source's treatments."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from cellstore.sources import load_moa
from cellstore.stage import StageContext, stage
from cellstore.synth import resolve_source, source_digest


def _source_state(settings: dict[str, Any], ctx: StageContext) -> str:
    project_dir = getattr(ctx.config, "project_dir", None)
    return source_digest(settings["source"], ctx.cache_dir, project_dir)


@stage(watch=_source_state)
def moa(*, source: str = "", ctx: StageContext) -> pa.Table:
    """(compound, concentration) → MoA from the source's BBBC021_v1_moa.csv, DMSO included.
    Grain: (compound, concentration). Concentrations are canonical µM floats, as in images.

    source: the same folder as the images stage; empty means the embedded demo.
    """
    project_dir = getattr(ctx.config, "project_dir", None)
    return load_moa(resolve_source(source, ctx.cache_dir, project_dir, ctx.progress))
