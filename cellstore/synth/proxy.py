"""Well profiles straight from the phenotype model, without pixels: a fast stand-in.

For every well a generation would draw, the same cells (`sample_field` with the field's own
random stream, so exactly the cells the renderer would draw) are summarised into a
*descriptor* vector: cell count, spacing, and the mean of each drawable trait (nucleus
radius, DNA brightness, mitotic share, fibre abundance, ...), with the Week's imaging gain
and background beside them. A full demo layout takes seconds instead of the ~4 minutes
of rendering, segmenting and measuring, so the phenotype model can be tuned over many
seeds; `benchmarks/bench_accuracy.py` then checks the result through the real pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellstore.synth.cells import FieldCells, sample_field
from cellstore.synth.params import SynthParams
from cellstore.synth.phenotypes import plate_effects, rng_for, week_effects, well_gain

# Per-cell traits averaged over a well's cells (FieldCells attribute names).
CELL_TRAITS = (
    "thickness",
    "is_mitotic",
    "is_ring",
    "is_binucleate",
    "nucleus_radius",
    "tubulin_level",
    "tubulin_fibres",
    "tubulin_bundling",
    "tubulin_aggregate",
    "actin_level",
    "actin_cortex",
    "actin_fibres",
    "actin_puncta",
)
NUCLEUS_TRAITS = ("lobe_amplitude", "dapi_level", "chromatin")
DESCRIPTORS = (
    "log_cells",
    "spacing",
    *CELL_TRAITS,
    "outline",
    "aspect",
    *NUCLEUS_TRAITS,
    "gain_dapi",
    "gain_tubulin",
    "gain_actin",
    "background_dapi",
    "background_tubulin",
    "background_actin",
    "vignetting",
)


@dataclass(frozen=True)
class WellDescriptors:
    """One row per generated well: its metadata and its descriptor vector."""

    plate: np.ndarray
    well: np.ndarray
    batch: np.ndarray
    compound: np.ndarray
    concentration: np.ndarray
    moa: np.ndarray  # the annotated MoA ("" for unannotated treatments)
    values: np.ndarray  # (n_wells, len(DESCRIPTORS))


def _describe(cells: list[FieldCells]) -> list[float]:
    """The descriptor vector (without imaging) of a well's fields pooled."""

    def pooled(name: str) -> np.ndarray:
        return np.concatenate([getattr(c, name) for c in cells]).astype(np.float64)

    n = sum(c.n_cells for c in cells)
    if n == 0:
        return [0.0] * (len(DESCRIPTORS) - 7)
    spacing = []
    for c in cells:
        if c.n_cells > 1:
            d = np.hypot(c.x[:, None] - c.x[None, :], c.y[:, None] - c.y[None, :])
            np.fill_diagonal(d, np.inf)
            spacing.append(d.min(axis=1))
    outline = np.concatenate([c.outline[:, 0] + c.outline[:, 2] for c in cells])
    aspect = pooled("nucleus_a") / pooled("nucleus_b")
    return [
        float(np.log(n / len(cells))),
        float(np.mean(np.concatenate(spacing))) if spacing else 0.0,
        *(float(np.mean(pooled(name))) for name in CELL_TRAITS),
        float(np.mean(outline)),
        float(np.mean(np.log(aspect))),
        *(float(np.mean(pooled(name))) for name in NUCLEUS_TRAITS),
    ]


def well_descriptors(params: SynthParams) -> WellDescriptors:
    """Descriptors of every well `params` would generate (same cells as the renderer's)."""
    from cellstore.synth.plates import plan, well_phenotype

    layout = plan(params)
    by_well: dict[tuple[str, str], list] = {}
    for field in layout.fields:
        by_well.setdefault((field.plate, field.well), []).append(field)
    rows, meta = [], []
    weeks: dict[str, object] = {}
    for (plate, well), fields in by_well.items():
        first = fields[0]
        if first.batch not in weeks:
            weeks[first.batch] = week_effects(params.seed, first.batch, params.batch_strength)
        week = weeks[first.batch]
        plate_fx = plate_effects(params.seed, plate)
        model = layout.models[first.compound]
        base, delta, effect = well_phenotype(params, first, model, week, plate_fx)
        cells = [
            sample_field(
                rng_for(params.seed, "field", f.plate, f.well, f.site),
                base,
                delta,
                effect,
                params.density,
            )
            for f in fields
        ]
        gain = well_gain(params.seed, week, plate_fx, plate, well)
        rows.append([*_describe(cells), *gain, *week.background, week.vignetting])
        moa = layout.annotations.get((first.compound, first.concentration), "")
        meta.append((plate, well, first.batch, first.compound, first.concentration, moa))
    columns = list(zip(*meta, strict=True))
    return WellDescriptors(
        plate=np.asarray(columns[0]),
        well=np.asarray(columns[1]),
        batch=np.asarray(columns[2]),
        compound=np.asarray(columns[3]),
        concentration=np.asarray(columns[4], dtype=np.float64),
        moa=np.asarray(columns[5]),
        values=np.asarray(rows, dtype=np.float64),
    )
