"""Well profiles and feature sets of every feature source declared in schemas/*.yml.

The stage's inputs are `images`, `moa` and every table whose schema file declares a
`feature_source` (see cellstore/profiling/feature_sources.py). They are found when the
project loads: the function's signature is built from the declarations, so the engine sees
ordinary named inputs (DAG edges, snapshot ids in the fingerprint), and `watch` digests the
declarations so that editing one rebuilds the stage.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from cellstore.profiling.feature_sources import declared_sources, sources_digest
from cellstore.stage import stage

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
SOURCES = declared_sources(SCHEMA_DIR)
FIXED_INPUTS = ("images", "moa")
SOURCE_TABLES = tuple(sorted({s.table for s in SOURCES} - set(FIXED_INPUTS)))


def _declarations(settings: dict[str, Any], ctx: Any) -> str:
    """What the stage aggregates: a changed declaration means a rebuild."""
    return sources_digest(declared_sources(SCHEMA_DIR))


def _well_profiles(**inputs: Any) -> dict[str, Any]:
    """Mean over each well's cells (cell grain) or the well's own vector (well grain), packed
    as one FLOAT[] per (feature_source, plate, well); feature_sets names its positions.

    Grain: (feature_source, plate, well) and feature_source. Cell-grain wells take batch,
    compound and concentration from `images`; every well its MoA from `moa` (NULL if none).
    """
    from cellstore.profiling.well_profiles import build_well_profiles

    tables = {name: inputs[name] for name in {s.table for s in SOURCES}}
    return build_well_profiles(inputs["images"], inputs["moa"], tables, SOURCES)


_well_profiles.__name__ = _well_profiles.__qualname__ = "well_profiles"
_well_profiles.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        for name in (*FIXED_INPUTS, *SOURCE_TABLES)
    ]
)
well_profiles = stage(outputs=["well_profiles", "feature_sets"], watch=_declarations)(
    _well_profiles
)
