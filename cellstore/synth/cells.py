"""Draw the cells of one field: phenotype z → drawable parameters and positions.

All lengths here are in pixels of the full-resolution 1280×1024 image; the renderer
multiplies them by the scale. Cell positions therefore do not depend on the scale: a field
generated at scale 0.5 shows the same cells as at scale 1, at half the resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellstore.synth.phenotypes import AXIS_INDEX, cell_phenotypes, cell_responses

FULL_WIDTH, FULL_HEIGHT = 1280, 1024
# BBBC021 was imaged at 20x onto a 1280×1024 camera with 6.45 µm pixels: ~0.32 µm/px, a
# 413 × 330 µm field. MCF-7 nuclei are ~10 µm across (~32 px), spread cells ~25 µm.
# Untreated fields hold roughly 100 cells; the density axis scales this (log, 0.5 per unit).
BASE_CELLS_PER_FIELD = 100.0
MAX_CELLS_PER_FIELD = 260
NUCLEUS_RADIUS = 15.0  # px, mean interphase nucleus
CYTOPLASM = 21.0  # px of cytoplasm reaching beyond the nucleus edge
COLONY_SPREAD = 60.0  # px, standard deviation of cells around a colony centre
PLACEMENT_TRIES = 30


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


@dataclass
class FieldCells:
    """The cells of one field. Per-cell arrays have length n, per-nucleus ones length m."""

    # per cell
    x: np.ndarray  # centre (px)
    y: np.ndarray
    thickness: np.ndarray  # cytoplasm extent beyond the nucleus edge (px)
    outline: np.ndarray  # (n, 4): amplitude and phase of the 2nd and 3rd outline harmonics
    is_mitotic: np.ndarray  # bool: rounded cell in (arrested) mitosis
    is_ring: np.ndarray  # bool: mitotic with a ring of chromosomes (monopolar spindle)
    is_binucleate: np.ndarray  # bool
    response: np.ndarray  # the cell's response r in [0, 1]
    nucleus_radius: np.ndarray  # px, mean radius of the cell's nucleus (or of each of two)
    tubulin_level: np.ndarray  # relative brightness (1 = DMSO)
    tubulin_fibres: np.ndarray  # share of tubulin in filaments, 0..1
    tubulin_bundling: np.ndarray  # 0 fine radial network .. 1 thick perinuclear bundles
    tubulin_aggregate: np.ndarray  # brightness of a perinuclear aggregate, 0..1
    actin_level: np.ndarray
    actin_cortex: np.ndarray  # relative cortical actin brightness (0.5 = DMSO)
    actin_fibres: np.ndarray  # stress fibre abundance, 0..1
    actin_puncta: np.ndarray  # expected puncta count / 5
    fibre_angle: np.ndarray  # orientation of stress fibres (radians)
    # per nucleus
    nucleus_x: np.ndarray
    nucleus_y: np.ndarray
    nucleus_a: np.ndarray  # semi-major axis (px)
    nucleus_b: np.ndarray  # semi-minor axis (px)
    nucleus_angle: np.ndarray  # radians
    lobe_amplitude: np.ndarray  # relative radius modulation of the outline
    lobe_count: np.ndarray  # int, number of lobes
    lobe_phase: np.ndarray
    dapi_level: np.ndarray  # peak DAPI signal (counts before gain)
    chromatin: np.ndarray  # relative amplitude of chromatin texture
    nucleus_cell: np.ndarray  # int, index of the owning cell

    @property
    def n_cells(self) -> int:
        return len(self.x)

    @property
    def n_nuclei(self) -> int:
        return len(self.nucleus_x)


def expected_cell_count(density: float) -> float:
    """Mean cells per full field at well-level density axis value `density`."""
    return BASE_CELLS_PER_FIELD * float(np.exp(0.5 * density))


def sample_field(
    rng: np.random.Generator,
    base: np.ndarray,
    delta: np.ndarray,
    effect: float,
    density_scale: float = 1.0,
) -> FieldCells:
    """Cells of one field of a well with phenotype base `base`, Δ `delta` and effect `effect`.

    density_scale multiplies the cell count (the demo may thin fields to save time).
    """
    well_z = base + effect * delta
    mean_count = expected_cell_count(well_z[AXIS_INDEX["density"]]) * density_scale
    n = int(min(rng.poisson(mean_count), MAX_CELLS_PER_FIELD))
    responses = cell_responses(rng, effect, n)
    z = cell_phenotypes(rng, base, delta, responses)

    def axis(name: str) -> np.ndarray:
        return z[:, AXIS_INDEX[name]]

    is_mitotic = rng.random(n) < _sigmoid(_logit(0.03) + 1.4 * axis("mitotic_arrest"))
    is_ring = is_mitotic & (rng.random(n) < _sigmoid(-2.5 + 1.3 * axis("dna_ring")))
    is_binucleate = ~is_mitotic & (
        rng.random(n) < _sigmoid(_logit(0.02) + 1.4 * axis("multinucleation"))
    )
    radius = NUCLEUS_RADIUS * np.exp(0.25 * axis("nucleus_size"))
    radius = np.where(is_mitotic, 0.7 * radius, radius)
    radius = np.where(is_binucleate, 0.85 * radius, radius)
    aspect = np.clip(np.exp(0.18 + 0.25 * axis("nucleus_elongation")), 1.0, 3.0)
    aspect = np.where(is_mitotic, np.minimum(aspect, 1.25), aspect)
    thickness = CYTOPLASM * np.exp(0.35 * axis("cell_size"))
    thickness = np.where(is_mitotic, 0.45 * thickness, thickness)
    irregularity = 0.18 * np.exp(0.5 * axis("cell_irregularity"))
    outline = np.stack(
        [
            irregularity * rng.uniform(0.5, 1.0, n),
            rng.uniform(0, 2 * np.pi, n),
            irregularity * rng.uniform(0.0, 0.7, n),
            rng.uniform(0, 2 * np.pi, n),
        ],
        axis=1,
    )
    # Extent of a cell's nucleus (pair) and of the whole cell, for the spacing rule.
    nucleus_extent = radius * np.sqrt(aspect) * np.where(is_binucleate, 1.9, 1.0) * 1.05
    cell_extent = nucleus_extent + thickness
    clustering = float(_sigmoid(_logit(0.3) + 1.2 * well_z[AXIS_INDEX["clustering"]]))
    keep, x, y = _place(rng, nucleus_extent, cell_extent, clustering)

    lobes = 0.02 + 0.1 * np.log1p(np.exp(axis("nucleus_irregularity") - 1.0))
    dapi = 2200.0 * np.exp(0.3 * axis("dna_content"))
    dapi = np.where(is_mitotic, 1.9 * dapi, dapi)
    chromatin = np.where(is_mitotic, 0.35, 0.14 * np.exp(0.6 * axis("chromatin_texture")))
    per_cell = {
        "x": x,
        "y": y,
        "thickness": thickness,
        "outline": outline,
        "is_mitotic": is_mitotic,
        "is_ring": is_ring,
        "is_binucleate": is_binucleate,
        "response": responses,
        "nucleus_radius": radius,
        "tubulin_level": np.exp(0.35 * axis("tubulin_level")),
        "tubulin_fibres": _sigmoid(1.2 + 1.3 * axis("tubulin_fibres")),
        "tubulin_bundling": _sigmoid(-2.2 + 1.3 * axis("tubulin_bundling")),
        "tubulin_aggregate": _sigmoid(-3.0 + 1.5 * axis("tubulin_aggregate")),
        "actin_level": np.exp(0.35 * axis("actin_level")),
        "actin_cortex": np.where(is_mitotic, 1.6, 1.0) * 0.5 * np.exp(0.5 * axis("actin_cortex")),
        "actin_fibres": np.where(is_mitotic, 0.0, _sigmoid(0.3 + 1.2 * axis("actin_fibres"))),
        "actin_puncta": np.maximum(np.exp(0.9 * axis("actin_puncta")) - 0.8, 0.0),
        "fibre_angle": rng.uniform(0, np.pi, n),
    }
    per_cell = {
        name: (value if name in ("x", "y") else value[keep]) for name, value in per_cell.items()
    }
    per_nucleus = _nuclei(
        rng,
        per_cell,
        aspect[keep],
        lobes[keep],
        dapi[keep],
        chromatin[keep],
    )
    return FieldCells(**per_cell, **per_nucleus)


def _place(
    rng: np.random.Generator,
    nucleus_extent: np.ndarray,
    cell_extent: np.ndarray,
    clustering: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions for the cells, one at a time, each kept apart from those already placed.

    Two nuclei may touch but not overlap much (centre distance ≥ 0.95 × the sum of their
    extents), and cells may overlap at most half their reach, so touching cells stay
    separable with a distance-transform watershed. A share `clustering` of the cells grows
    in colonies around a few centres; a cell that finds no room anywhere in its tries is
    left out (the field is full). Returns (kept cell indices, x, y).
    """
    n = len(nucleus_extent)
    n_colonies = max(1, int(round(n / 12)))
    colonies = np.column_stack(
        [rng.uniform(0, FULL_WIDTH, n_colonies), rng.uniform(0, FULL_HEIGHT, n_colonies)]
    )
    in_colony = rng.random(n) < clustering
    home = rng.integers(0, n_colonies, n)
    # Candidates per cell, drawn at once: colony members try near their colony first, then
    # anywhere (a full colony spills over); the others try anywhere.
    size = np.array([FULL_WIDTH, FULL_HEIGHT], dtype=float)
    uniform = rng.uniform(0.0, 1.0, (n, PLACEMENT_TRIES, 2)) * size
    near = colonies[home][:, None, :] + rng.normal(0.0, COLONY_SPREAD, (n, PLACEMENT_TRIES, 2))
    near = np.where(in_colony[:, None, None], near, uniform)
    candidates_of = np.concatenate([near, uniform], axis=1)  # (n, 2·tries, 2)
    placed = np.empty((n, 2))
    placed_nucleus = np.empty(n)
    placed_cell = np.empty(n)
    kept: list[int] = []
    for i in range(n):
        candidates = candidates_of[i]
        candidates = candidates[np.all((candidates >= 0) & (candidates < size), axis=1)]
        k = len(kept)
        needed = np.maximum(
            0.95 * (nucleus_extent[i] + placed_nucleus[:k]),
            0.5 * (cell_extent[i] + placed_cell[:k]),
        )
        # Usually the first few candidates fit: test them in small chunks.
        for chunk in range(0, len(candidates), 6):
            tries = candidates[chunk : chunk + 6]
            distance = np.hypot(
                tries[:, None, 0] - placed[None, :k, 0], tries[:, None, 1] - placed[None, :k, 1]
            )
            fits = np.flatnonzero(np.all(distance >= needed[None, :], axis=1))
            if len(fits):
                placed[k] = tries[fits[0]]
                placed_nucleus[k], placed_cell[k] = nucleus_extent[i], cell_extent[i]
                kept.append(i)
                break
    k = len(kept)
    return np.asarray(kept, dtype=np.int64), placed[:k, 0].copy(), placed[:k, 1].copy()


def _nuclei(
    rng: np.random.Generator,
    cells: dict[str, np.ndarray],
    aspect: np.ndarray,
    lobes: np.ndarray,
    dapi: np.ndarray,
    chromatin: np.ndarray,
) -> dict[str, np.ndarray]:
    """One nucleus per cell, two (side by side, touching) for binucleate cells."""
    n = len(cells["x"])
    count = np.where(cells["is_binucleate"], 2, 1)
    owner = np.repeat(np.arange(n), count)
    first = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64) if n else count
    second = np.zeros(len(owner), dtype=bool)
    second[first[count == 2] + 1] = True
    radius = cells["nucleus_radius"][owner]
    a = radius * np.sqrt(aspect[owner])
    b = radius / np.sqrt(aspect[owner])
    angle = rng.uniform(0, np.pi, len(owner))
    # Binucleate: both nuclei on the line through the cell centre along the first's minor
    # axis, each shifted by its semi-minor axis + 4 % so that they touch without overlapping.
    pair_angle = angle[first][owner] + np.pi / 2
    shift = np.where(count[owner] == 2, b * 1.04, 0.0) * np.where(second, -1.0, 1.0)
    angle = np.where(count[owner] == 2, angle[first][owner], angle)
    return {
        "nucleus_x": cells["x"][owner] + shift * np.cos(pair_angle),
        "nucleus_y": cells["y"][owner] + shift * np.sin(pair_angle),
        "nucleus_a": a,
        "nucleus_b": b,
        "nucleus_angle": angle,
        "lobe_amplitude": np.where(cells["is_mitotic"][owner], 0.03, lobes[owner]),
        "lobe_count": rng.integers(2, 4, len(owner)),
        "lobe_phase": rng.uniform(0, 2 * np.pi, len(owner)),
        "dapi_level": dapi[owner] * rng.lognormal(0.0, 0.05, len(owner)),
        "chromatin": chromatin[owner],
        "nucleus_cell": owner,
    }
