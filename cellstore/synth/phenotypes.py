"""The phenotype model of the synthetic plates: the benchmark's ground truth.

Every cell is described by a point z in a latent *phenotype space* with one axis per
morphological trait (`AXES`); an untreated (DMSO) cell of an average plate sits at z = 0.
`cellstore.synth.cells` turns z into drawable parameters (nucleus radius, fibre counts, ...)
and `cellstore.synth.render` draws them. The model, from well to cell:

    z_cell = batch(Week) + plate + well noise + seeding density  (no MoA information)
           + r_cell · Δ_Week(compound)                          (the treatment's phenotype)
           + cell noise                                         (cell-to-cell variation)

The constants below are calibrated (`benchmarks/bench_accuracy.py`, README "Results") so
that handcrafted features on the demo layout score like the real CellProfiler profiles of
Ljosa et al. 2013 through the same evaluation; `batch_strength` and `heterogeneity`
(`cellstore synth --batch-strength / --heterogeneity`) scale the two calibrated phenomena.

- Compounds and the Weeks' biology are fixed properties of the screen (`COMPOUND_SEED`):
  every seed images the same compounds in the same Weeks, whose cells sit and respond the
  same way, imaged with mostly the same microscope set-up; a seed is a replicate experiment
  that redraws the plates, wells and cells and a share of the imaging state. So what is
  hard about a treatment (a weak MoA, a DMSO-like low dose, a compound alone in its Week)
  is structural, not drawn. (Drawn per seed in generator
  version 2, a Week's response change pushed a compound towards another MoA in one seed and
  not in the next, every dose together: whitened NSC / NSCB swung by 0.05 / 0.06 between
  seeds, against 0.017 / 0.027 now.)
- Δ(compound) = Δ(MoA) ⊙ (1 + J·ε) + O·‖Δ(MoA)‖·v: the MoA direction `MOA_EFFECTS`, with a
  compound-specific scaling and an off-target part v (a unit direction of its own); J and
  O scale with `heterogeneity`. Compounds of one MoA look alike, not identical (the NSC
  protocol asks a treatment to find *another* compound of its MoA).
- Dose response: a well's effect e = c^h / (c^h + EC50^h), Hill slope h = 1.5, with c the
  concentration in µM. EC50 of an annotated compound = its lowest annotated concentration ×
  10^(EC50_SHIFT + EC50_SPREAD·ε), so its lowest dose gives a partial phenotype and its
  highest is saturated. Unannotated compounds get a hidden MoA (chosen from their name) with a
  larger off-target part, an EC50 near the middle of their dose range, and 30 % of them are
  nearly inactive.
- Per-cell heterogeneity: a cell's response r ~ Beta(5e + 0.05, 5(1 − e) + 0.05), so at a
  middling dose some cells respond fully and others not at all; then independent noise of
  `CELL_NOISE` on every axis. Discrete states (mitotic arrest, two nuclei, ring-shaped DNA)
  are drawn per cell with probabilities that rise with their axes.
- Cell density (cells per field) follows the well-level `density` axis: e·Δ + batch + plate.

MoAs are deliberately arranged in neighbourhoods, as in the real screen: DNA damage and
DNA replication both enlarge nuclei (they differ in DNA content and texture); Eg5 inhibitors
and microtubule destabilizers both arrest cells in mitosis (ring-shaped DNA vs lost
microtubules); cholesterol-lowering, kinase inhibitors and protein synthesis inhibitors are
weak phenotypes close to DMSO and to each other.

Batch effects (per Week, `week_effects`), as in the real screen where the compounds of one
MoA were mostly imaged in the same one or two Weeks (the layout is the real metadata's):
- the Week's cells respond differently to a treatment of MoA m:
  Δ_Week = Δ + (T·G_w Δ + S·‖Δ‖·u_{w,m}) / max(‖Δ‖, 1)²,
  G_w a random matrix (entries N(0, 1/d)) and u_{w,m} a unit direction of the Week and MoA
  (neither changes density). Both parts move a phenotype by about T (and S) times its size
  below ‖Δ‖ = 1 and by T/‖Δ‖ above, so subtle phenotypes (DNA damage and replication,
  protein synthesis, cholesterol-lowering, kinase inhibitors) lose their cross-Week identity
  while dramatic ones (mitotic arrest, tubulin bundles, colonies, actin puncta) keep it.
  The turn G_w (`WEEK_RESPONSE_TURN`) is the Week's own; the shift u_{w,m}
  (`WEEK_MOA_SHIFT`) is shared by every compound of the MoA in that Week, so compounds of
  one MoA imaged in the same Week look more alike than across Weeks: NSC gains from the
  batch, NSCB does not. DMSO wells do not respond, so no DMSO-based correction (per-plate
  standardisation, whitening, TVN) can remove either.
- a biological offset of the whole population in phenotype space (`WEEK_NOISE`: σ = 0.13
  per axis, 0.15 on density), which DMSO wells do show. Per-plate standardisation removes
  it; whitening and TVN, fitted on the controls of every plate together, keep it, and it
  pulls a Week's treatments of every MoA together: at σ = 0.1 / 0.13 / 0.2 / 0.3 whitened
  NSC was 0.893 / 0.887 / 0.861 / 0.832 over seeds 0-2, so it is kept small;
- imaging effects per channel: gain (log-normal, σ = 0.2), background offset (100–400
  counts), and an illumination field (radial vignetting of 10–35 % with an off-centre peak,
  plus a linear tilt). They are mostly the screen's own set-up of that Week; a seed redraws
  a share `WEEK_IMAGING_REPLICATE` of them.
`batch_strength` multiplies T, S and the offset (not the imaging, which per-plate DMSO
normalisation removes anyway). Plates add their own small offsets (σ = 0.06 in phenotype
space, 5 % gain).

Wells (DMSO included) vary in three ways, none of them MoA information:
- noise (σ = 0.05 per axis), and a share `OUTLIER_RATE` of disturbed wells (debris, a
  scratch: moved by `OUTLIER_SIZE` in a random direction). With ~6 DMSO wells per plate,
  one disturbed control skews the per-plate scale of standardize / robustize, while
  whitening on all controls and the median over a treatment's replicate wells absorb it;
- seeding density (`CONFLUENCE_NOISE`): crowded wells hold smaller, rounder cells that touch
  more and divide less, several traits moving together along `CONFLUENCE_PROFILE`;
- staining (`STAIN_NOISE`): each channel's dye is a little brighter or dimmer in each well,
  so every intensity and texture feature of the channel moves with it.
The last two move many features together. A per-feature z-score (standardize, robustize)
weights such a correlated block by its number of features and cannot tell it from a
phenotype; whitening on the controls learns its few directions and discounts them. That,
with the Week offsets above, is why whitening beats per-plate standardisation on the real
screen (0.932 / 0.739 against 0.767 / 0.685 NSC / NSCB), and here.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

AXES: tuple[str, ...] = (
    "density",  # log of cells per field (well level)
    "clustering",  # cells grow in tight colonies instead of spreading evenly
    "nucleus_size",  # log of nucleus radius
    "nucleus_elongation",  # log of nucleus aspect ratio
    "nucleus_irregularity",  # lobed / blebbed nuclear outline
    "dna_content",  # log of DAPI brightness (more DNA: S/G2 arrest, polyploidy)
    "chromatin_texture",  # granular, condensed chromatin
    "mitotic_arrest",  # share of rounded, condensed mitotic cells
    "dna_ring",  # arrested cells show a ring of chromosomes (monopolar spindle)
    "multinucleation",  # share of cells with two nuclei (failed cytokinesis)
    "cell_size",  # log of cytoplasm extent around the nucleus
    "cell_irregularity",  # ragged, polarised cell outline
    "tubulin_level",  # log of tubulin brightness
    "tubulin_fibres",  # microtubule network (negative: diffuse, depolymerised tubulin)
    "tubulin_bundling",  # thick bright bundles wrapped around the nucleus
    "tubulin_aggregate",  # a bright perinuclear aggregate (aggresome)
    "actin_level",  # log of actin brightness
    "actin_cortex",  # cortical actin at cell edges and cell-cell junctions
    "actin_fibres",  # stress fibres across the cell
    "actin_puncta",  # actin clumped into bright dots
)
AXIS_INDEX = {name: i for i, name in enumerate(AXES)}

# Δ(MoA): the saturated (e = 1) phenotype of each MoA, as offsets from DMSO. About 1 on an
# axis is an obvious change for that trait; below ~0.4 it is subtle.
MOA_EFFECTS: dict[str, dict[str, float]] = {
    "Actin disruptors": {
        "actin_fibres": -2.0,
        "actin_puncta": 2.5,
        "actin_cortex": -1.0,
        "cell_size": -0.5,
        "cell_irregularity": 1.0,
        "multinucleation": 1.5,
    },
    "Aurora kinase inhibitors": {
        "nucleus_size": 1.2,
        "dna_content": 1.0,
        "nucleus_irregularity": 1.5,
        "multinucleation": 2.2,
        "density": -0.8,
        "cell_size": 0.6,
    },
    "Cholesterol-lowering": {
        "cell_size": -0.35,
        "actin_fibres": -0.5,
        "cell_irregularity": -0.4,
        "density": -0.2,
        "tubulin_level": 0.15,
    },
    "DNA damage": {
        "nucleus_size": 0.7,
        "dna_content": 0.3,
        "chromatin_texture": 1.2,
        "nucleus_irregularity": 0.6,
        "cell_size": 0.5,
        "density": -0.6,
    },
    "DNA replication": {
        "nucleus_size": 0.6,
        "dna_content": 1.3,
        "chromatin_texture": 0.5,
        "cell_size": 0.3,
        "density": -0.7,
    },
    "Eg5 inhibitors": {
        "mitotic_arrest": 3.0,
        "dna_ring": 3.0,
        "density": -0.3,
        "actin_cortex": 0.4,
    },
    "Epithelial": {
        "clustering": 2.6,
        "actin_cortex": 1.9,
        "cell_size": -0.4,
        "cell_irregularity": -0.8,
        "tubulin_level": 0.3,
    },
    "Kinase inhibitors": {
        "cell_irregularity": 0.6,
        "nucleus_elongation": 0.5,
        "actin_fibres": 0.5,
        "cell_size": 0.25,
    },
    "Microtubule destabilizers": {
        "tubulin_fibres": -2.5,
        "mitotic_arrest": 2.6,
        "cell_size": -0.4,
        "density": -0.4,
        "tubulin_level": 0.2,
    },
    "Microtubule stabilizers": {
        "tubulin_bundling": 2.6,
        "tubulin_level": 0.5,
        "mitotic_arrest": 2.0,
        "nucleus_irregularity": 1.0,
        "density": -0.3,
    },
    "Protein degradation": {
        "tubulin_aggregate": 2.6,
        "cell_size": 0.4,
        "nucleus_size": 0.15,
        "actin_level": -0.25,
    },
    "Protein synthesis": {
        "tubulin_level": -0.5,
        "actin_level": -0.5,
        "cell_size": -0.4,
        "nucleus_size": -0.15,
        "density": -0.25,
    },
}
DMSO = "DMSO"

HILL_SLOPE = 1.5
RESPONSE_CONCENTRATION = 5.0  # κ of the per-cell Beta response
# Cell-to-cell standard deviation per axis (density is well level: no cell noise).
CELL_NOISE = np.array([0.0 if name == "density" else 0.3 for name in AXES])
WEEK_NOISE = np.array([0.15 if name == "density" else 0.13 for name in AXES])
WEEK_GAIN_NOISE = 0.2  # σ of the log imaging gain per channel and Week
PLATE_NOISE = 0.06
WELL_NOISE = 0.05

# Compounds are properties of the screen, not of an experiment: their phenotypes and
# potencies come from this fixed stream, so every seed images the same compounds (a seed is
# a replicate experiment: new Weeks, plates, wells and cells) and which treatments are hard
# is structural, not drawn.
COMPOUND_SEED = 0
# Within-MoA heterogeneity at heterogeneity = 1: Δ(compound) = Δ(MoA) ⊙ (1 + J·ε)
# + O·‖Δ(MoA)‖·v, v a random unit direction (the compound's own, off-target phenotype).
COMPOUND_JITTER = 0.075
COMPOUND_OFF_TARGET = 0.05
# log10 EC50 / lowest annotated dose ~ N(EC50_SHIFT, EC50_SPREAD).
EC50_SHIFT = -0.1
EC50_SPREAD = 0.15
# Week × treatment interaction at batch_strength = 1 (see the module docstring):
# Δ_Week = Δ + (T·G_w Δ + S·‖Δ‖·u_{w,MoA}) / max(‖Δ‖, 1)². DMSO wells do not respond,
# so they can neither reveal nor correct it.
WEEK_RESPONSE_TURN = 3.0  # T
WEEK_MOA_SHIFT = 2.0  # S
# Share of the Weeks' offset and turn G_w redrawn per seed (0: the screen's own; the MoA
# shifts are always the screen's).
WEEK_RESPONSE_REPLICATE = 0.0
# Disturbed wells (debris, a scratch, uneven seeding): a share OUTLIER_RATE of all wells,
# DMSO included, is moved by OUTLIER_SIZE in a random direction. A plate holds only ~6
# DMSO wells, so one disturbed control skews its per-plate scale; the medians of a
# treatment's replicate wells and whitening on all controls absorb them.
OUTLIER_RATE = 0.05
OUTLIER_SIZE = 3.0
# Seeding density: wells of one treatment hold more or fewer cells (pipetting, edge
# evaporation), and crowding changes many traits together: crowded cells are smaller and
# rounder, touch more (cortical actin at junctions, colonies), lose stress fibres and divide
# less (contact inhibition). One well-level draw c ~ N(0, CONFLUENCE_NOISE) moves z by
# c · CONFLUENCE_PROFILE, DMSO wells included. The many features that follow it dominate a
# per-feature z-score (standardize), while whitening on the controls folds them into one
# direction: the redundancy that makes whitening win on the real CellProfiler profiles.
CONFLUENCE_NOISE = 0.2
CONFLUENCE_PROFILE: dict[str, float] = {
    "density": 1.0,
    "clustering": 0.5,
    "nucleus_size": -0.25,
    "dna_content": -0.1,
    "mitotic_arrest": -0.3,
    "cell_size": -0.6,
    "cell_irregularity": -0.4,
    "tubulin_fibres": -0.2,
    "actin_cortex": 0.5,
    "actin_fibres": -0.4,
}
# Staining varies from well to well (dispensed dye volume, wash): each well's channels get
# their own gain, log-normal with σ = STAIN_NOISE. Every intensity and texture feature of a
# channel follows it together, so per-feature z-scores (standardize) cannot tell it from
# biology, while whitening on the controls learns its three directions.
STAIN_NOISE = 0.15
# Share of a Week's imaging state (gain, background, illumination) that a seed redraws; the
# rest is the screen's own microscope set-up for that Week, like its biology.
WEEK_IMAGING_REPLICATE = 0.3
# Which of a Week's N_IMAGING normal draws sets which imaging parameter (fixed positions:
# reordering them would change every generated image).
IMAGING_GAIN = slice(0, 3)  # per channel
IMAGING_BACKGROUND = slice(3, 6)  # per channel
IMAGING_VIGNETTING = 6
IMAGING_CENTRE = slice(7, 9)  # x, y
IMAGING_TILT = slice(9, 11)  # x, y
N_IMAGING = 11


def stable_int(*parts: object) -> int:
    """A 64-bit integer from `parts` that is the same on every run and machine."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def rng_for(seed: int, *parts: object) -> np.random.Generator:
    """The random stream of one entity (a Week, plate, well, field): independent of which
    other entities are generated, so a subset of plates renders exactly as in the full set."""
    return np.random.default_rng([seed, stable_int(*parts)])


def _axis_vector(values: dict[str, float]) -> np.ndarray:
    """`values` (axis name → value) as a vector over AXES, zero where an axis is absent."""
    vector = np.zeros(len(AXES))
    for axis, value in values.items():
        vector[AXIS_INDEX[axis]] = value
    return vector


def moa_vector(moa: str) -> np.ndarray:
    """Δ(MoA) as a vector over AXES (zeros for DMSO)."""
    return _axis_vector(MOA_EFFECTS.get(moa, {}))


# z change per unit of seeding density (read-only: shared by every well).
CONFLUENCE_VECTOR = _axis_vector(CONFLUENCE_PROFILE)
CONFLUENCE_VECTOR.setflags(write=False)


@dataclass(frozen=True)
class CompoundModel:
    """How one compound acts: its (true or hidden) MoA, Δ, and EC50 in µM."""

    compound: str
    moa: str
    is_annotated: bool
    delta: np.ndarray  # (len(AXES),)
    ec50: float

    def effect(self, concentration: float) -> float:
        """Fraction of the saturated phenotype at `concentration` µM (Hill curve)."""
        if self.moa == DMSO or concentration <= 0:
            return 0.0
        ratio = (concentration / self.ec50) ** HILL_SLOPE
        return float(ratio / (1.0 + ratio))


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def compound_models(
    annotations: dict[tuple[str, float], str],
    concentrations: dict[str, Iterable[float]],
    heterogeneity: float = 1.0,
) -> dict[str, CompoundModel]:
    """A CompoundModel for every compound of the metadata (the same for every seed).

    annotations: (compound, concentration) → MoA, from moa.csv.
    concentrations: compound → every concentration it is used at in image.csv.
    heterogeneity: multiplies the within-MoA spread (compound jitter and off-target part).
    """
    annotated: dict[str, tuple[str, list[float]]] = {}
    for (compound, concentration), moa in annotations.items():
        annotated.setdefault(compound, (moa, []))[1].append(concentration)
    moas = sorted(MOA_EFFECTS)
    models: dict[str, CompoundModel] = {}
    for compound, doses in concentrations.items():
        rng = rng_for(COMPOUND_SEED, "compound", compound)
        jitter = rng.standard_normal(len(AXES))
        off_target = _unit(rng.standard_normal(len(AXES)))
        potency_draw = rng.normal()
        if compound in annotated:
            moa, annotated_doses = annotated[compound]
            if moa == DMSO:
                models[compound] = CompoundModel(compound, DMSO, True, np.zeros(len(AXES)), 1.0)
                continue
            base = moa_vector(moa)
            delta = base * (1 + heterogeneity * COMPOUND_JITTER * jitter) + (
                heterogeneity * COMPOUND_OFF_TARGET * np.linalg.norm(base) * off_target
            )
            ec50 = min(annotated_doses) * 10 ** (EC50_SHIFT + EC50_SPREAD * potency_draw)
            models[compound] = CompoundModel(compound, moa, True, delta, float(ec50))
        else:
            moa = moas[stable_int("hidden-moa", compound) % len(moas)]
            potency = 0.2 if rng.random() < 0.3 else 1.0
            base = moa_vector(moa)
            delta = potency * (base * (1 + 0.3 * jitter) + 0.5 * np.linalg.norm(base) * off_target)
            positive = [c for c in doses if c > 0] or [1.0]
            middle = float(np.exp(np.mean(np.log(positive))))
            ec50 = middle * 10 ** (0.5 * potency_draw)
            models[compound] = CompoundModel(compound, moa, False, delta, float(ec50))
    return models


@dataclass(frozen=True)
class WeekEffects:
    """Batch effects of one Week: a phenotype offset, a change of the treatment response,
    and the imaging system's state."""

    offset: np.ndarray  # (len(AXES),) added to every cell's z
    response_mixing: np.ndarray  # (len(AXES), len(AXES)): Δ → (I + this) Δ
    gain: np.ndarray  # (3,) per channel (DAPI, tubulin, actin) multiplier
    background: np.ndarray  # (3,) counts added everywhere
    vignetting: float  # relative drop of illumination at the image corners
    centre: tuple[float, float]  # illumination peak, as fractions of (width, height)
    tilt: tuple[float, float]  # linear illumination gradient across (x, y)
    week: str = ""
    moa_shift: float = 0.0  # S, the size of the Week × MoA part (see `response`)

    def response(self, delta: np.ndarray, moa: str | None = None) -> np.ndarray:
        """Δ of a compound of `moa` as this Week's cells express it."""
        norm = float(np.linalg.norm(delta))
        change = self.response_mixing @ delta
        if moa is not None and moa != DMSO and self.moa_shift > 0:
            change = change + norm * self.moa_shift * self.moa_direction(moa)
        # Changed by about T (and S) times its size below ‖Δ‖ = 1 and by T/‖Δ‖ above: subtle
        # phenotypes lose their identity across Weeks, dramatic ones keep it, and a nearly
        # inactive compound stays nearly inactive.
        return delta + change / max(norm, 1.0) ** 2

    def moa_direction(self, moa: str) -> np.ndarray:
        """The unit direction this Week's cells add to every compound of `moa`."""
        return _week_moa_direction(self.week, moa)


@functools.cache
def _week_moa_direction(week: str, moa: str) -> np.ndarray:
    direction = rng_for(COMPOUND_SEED, "week-moa", week, moa).standard_normal(len(AXES))
    direction[AXIS_INDEX["density"]] = 0.0
    direction = _unit(direction)
    direction.setflags(write=False)  # shared by every caller
    return direction


def week_effects(seed: int, week: str, batch_strength: float = 1.0) -> WeekEffects:
    """The Week's batch effects, drawn from its own random stream.

    batch_strength multiplies every phenotype-space batch effect (offset and response
    change); imaging effects (gain, background, illumination) are kept, since per-plate
    DMSO normalisation already removes them.
    """
    rng = rng_for(seed, "week", week)
    seed_offset = rng.standard_normal(len(AXES))
    rho = WEEK_RESPONSE_REPLICATE
    screen_offset = rng_for(COMPOUND_SEED, "week-offset", week).standard_normal(len(AXES))
    offset = ((1 - rho**2) ** 0.5 * screen_offset + rho * seed_offset) * WEEK_NOISE
    # Imaging: N(0, 1) draws mixed from the screen's and the seed's stream, then mapped onto
    # each parameter's range (uniform ranges through the normal CDF).
    screen_imaging = rng_for(COMPOUND_SEED, "week-imaging", week).standard_normal(N_IMAGING)
    seed_imaging = rng.standard_normal(N_IMAGING)
    share = WEEK_IMAGING_REPLICATE
    imaging = (1 - share**2) ** 0.5 * screen_imaging + share * seed_imaging
    uniform = ndtr(imaging)
    gain = np.exp(imaging[IMAGING_GAIN] * WEEK_GAIN_NOISE)
    background = 100.0 + 300.0 * uniform[IMAGING_BACKGROUND]
    vignetting = float(0.10 + 0.25 * uniform[IMAGING_VIGNETTING])
    centre_x, centre_y = 0.35 + 0.3 * uniform[IMAGING_CENTRE]
    tilt_x, tilt_y = 0.06 * imaging[IMAGING_TILT]
    centre, tilt = (float(centre_x), float(centre_y)), (float(tilt_x), float(tilt_y))
    d = len(AXES)
    screen = rng_for(COMPOUND_SEED, "week-response", week).standard_normal((d, d))
    replicate = rng_for(seed, "week-response", week).standard_normal((d, d))
    draw = (1 - rho**2) ** 0.5 * screen + rho * replicate
    mixing = draw * (batch_strength * WEEK_RESPONSE_TURN / d**0.5)
    mixing[AXIS_INDEX["density"]] = 0.0  # the Week changes how cells respond, not how many
    return WeekEffects(
        week=week,
        moa_shift=batch_strength * WEEK_MOA_SHIFT,
        offset=offset * batch_strength,
        response_mixing=mixing,
        gain=gain,
        background=background,
        vignetting=vignetting,
        centre=centre,
        tilt=tilt,
    )


@dataclass(frozen=True)
class PlateEffects:
    """Plate-to-plate noise on top of the Week's effects."""

    offset: np.ndarray  # (len(AXES),)
    gain: np.ndarray  # (3,)


def plate_effects(seed: int, plate: str) -> PlateEffects:
    rng = rng_for(seed, "plate", plate)
    return PlateEffects(
        offset=rng.standard_normal(len(AXES)) * PLATE_NOISE,
        gain=np.exp(rng.normal(0.0, 0.05, size=3)),
    )


def well_offset(seed: int, plate: str, well: str) -> np.ndarray:
    """Well-to-well noise (pipetting, the odd disturbed well) in phenotype space."""
    rng = rng_for(seed, "well", plate, well)
    noise = rng.standard_normal(len(AXES)) * WELL_NOISE
    disturbed = rng.random() < OUTLIER_RATE
    direction = rng.standard_normal(len(AXES))
    direction[AXIS_INDEX["density"]] = 0.0  # disturbed, not more crowded
    if disturbed:
        noise += OUTLIER_SIZE * _unit(direction)
    return noise + rng.normal() * CONFLUENCE_NOISE * CONFLUENCE_VECTOR


def well_stain(seed: int, plate: str, well: str) -> np.ndarray:
    """(3,) gain of the well's staining per channel (DAPI, tubulin, actin)."""
    return np.exp(rng_for(seed, "stain", plate, well).normal(0.0, STAIN_NOISE, size=3))


def well_gain(
    seed: int, week: WeekEffects, plate_fx: PlateEffects, plate: str, well: str
) -> np.ndarray:
    """(3,) imaging gain of one well per channel: its Week's microscope × its plate × its
    own staining."""
    return week.gain * plate_fx.gain * well_stain(seed, plate, well)


def cell_responses(rng: np.random.Generator, effect: float, n: int) -> np.ndarray:
    """(n,) per-cell response in [0, 1] with mean ≈ `effect` (heterogeneous responders)."""
    if effect <= 0:
        return np.zeros(n)
    a = RESPONSE_CONCENTRATION * effect + 0.05
    b = RESPONSE_CONCENTRATION * (1 - effect) + 0.05
    return rng.beta(a, b, size=n)


def cell_phenotypes(
    rng: np.random.Generator, base: np.ndarray, delta: np.ndarray, responses: np.ndarray
) -> np.ndarray:
    """(n, len(AXES)) cell z: well base + response · Δ + cell noise."""
    n = len(responses)
    noise = rng.standard_normal((n, len(AXES))) * CELL_NOISE
    return base[None, :] + responses[:, None] * delta[None, :] + noise
