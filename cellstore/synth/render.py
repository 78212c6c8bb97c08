"""Draw a field's cells into three 16-bit fluorescence images (DAPI, tubulin, actin).

Image model, per channel c (counts):
    I_c = background_c + gain_c · illumination(x, y) · PSF ∗ signal_c + noise,
    noise ~ N(0, read² + I_c / photons_per_count)    (read and shot noise)
signal_c is built from the cells: nuclei as filled (lobed) ellipses with a dome profile and
chromatin texture; cell bodies as the territory of each nucleus (nearest-nucleus tessellation
cut at the cell's reach, so neighbours touch along straight junctions); filaments, bundles,
aggregates and puncta as points splatted along curves and blurred. Everything is vectorised
over cells; only a handful of full-image filters run per field.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

from cellstore.synth.cells import FULL_HEIGHT, FULL_WIDTH, FieldCells

READ_NOISE = 12.0  # counts
COUNTS_PER_PHOTON = 1.5  # shot-noise variance = I · this
PSF_SIGMA = 1.0  # px at scale 1: optics blur
THICK_SIGMA = 2.0  # px at scale 1: bundles, aggregates, puncta
TEXTURE_SIGMA = 1.3  # px at scale 1: grain of chromatin and cytoplasm texture
TRUNCATE = 3.0  # Gaussian kernels reach 3 σ
POINT_SPACING = 0.6  # px between samples along a filament (below the blur, so lines stay solid)

# Signal amplitudes (counts before gain) of an untreated cell's structures.
TUBULIN_DIFFUSE = 300.0
TUBULIN_FIBRE = 260.0
TUBULIN_AGGREGATE = 1400.0
ACTIN_DIFFUSE = 240.0
ACTIN_CORTEX = 950.0
ACTIN_FIBRE = 380.0
ACTIN_PUNCTUM = 1600.0


@dataclass(frozen=True)
class Imaging:
    """The imaging state of a field: per-channel gain and background, illumination shape."""

    gain: np.ndarray  # (3,)
    background: np.ndarray  # (3,)
    vignetting: float
    centre: tuple[float, float]
    tilt: tuple[float, float]


def field_shape(scale: float) -> tuple[int, int]:
    """(height, width) of a field written at `scale` (1 → 1024 × 1280)."""
    return max(1, round(FULL_HEIGHT * scale)), max(1, round(FULL_WIDTH * scale))


@lru_cache(maxsize=4)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return yy, xx


class _Canvas:
    """The point splats of one channel, by layer: `sharp` (PSF blur only) and `thick`
    (extra blur); `base` holds the directly drawn (diffuse) signal. Splats are gathered and
    binned once, in `finish`."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.base = np.zeros((height, width), dtype=np.float32)
        self.points: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"sharp": [], "thick": []}

    def splat(self, layer: str, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> None:
        col = np.rint(x).astype(np.int64)
        row = np.rint(y).astype(np.int64)
        ok = (col >= 0) & (col < self.width) & (row >= 0) & (row < self.height)
        self.points[layer].append((row[ok] * self.width + col[ok], w[ok]))

    def binned(self, layer: str) -> np.ndarray:
        size = self.height * self.width
        parts = self.points[layer]
        if not parts:
            return np.zeros((self.height, self.width), dtype=np.float32)
        flat = np.concatenate([p[0] for p in parts])
        weight = np.concatenate([p[1] for p in parts])
        image = np.bincount(flat, weights=weight, minlength=size).astype(np.float32)
        return image.reshape(self.height, self.width)

    def finish(self, psf: float, thick: float) -> np.ndarray:
        """PSF ∗ (base + sharp + extra-blur ∗ thick)."""
        image = self.base + self.binned("sharp")
        extra = np.sqrt(max(thick**2 - psf**2, 0.0))
        thick_layer = self.binned("thick")
        image += (
            ndi.gaussian_filter(thick_layer, extra, truncate=TRUNCATE) if extra > 0 else thick_layer
        )
        return ndi.gaussian_filter(image, psf, truncate=TRUNCATE)


def render_field(cells: FieldCells, scale: float, imaging: Imaging, rng: np.random.Generator):
    """(3, H, W) uint16 images (DAPI, tubulin, actin) of `cells` at `scale`."""
    height, width = field_shape(scale)
    yy, xx = _grid(height, width)
    psf = max(PSF_SIGMA * scale, 0.5)
    thick = max(THICK_SIGMA * scale, psf)
    # One texture field serves chromatin (inside nuclei) and cytoplasm (outside them).
    texture = _smooth_noise(rng, (height, width), max(TEXTURE_SIGMA * scale, 0.6))

    nucleus_label, rho = _raster_nuclei(cells, scale, height, width)
    cell_label, reach_fraction = _territories(cells, scale, nucleus_label, xx, yy)
    body = np.flatnonzero(cell_label.ravel() >= 0)  # flat indices of cell pixels

    dapi = _dapi_signal(cells, nucleus_label, rho, texture)
    tubulin = _Canvas(height, width)
    actin = _Canvas(height, width)
    _draw_tubulin(tubulin, cells, scale, cell_label, body, reach_fraction, texture, rng, psf, thick)
    _draw_actin(actin, cells, scale, cell_label, body, texture, rng, psf, thick)

    signals = [
        ndi.gaussian_filter(dapi, psf, truncate=TRUNCATE),
        tubulin.finish(psf, thick),
        actin.finish(psf, thick),
    ]
    illumination = _illumination(imaging, xx, yy, width, height)
    out = np.empty((3, height, width), dtype=np.uint16)
    for c, signal in enumerate(signals):
        image = signal * illumination
        image *= np.float32(imaging.gain[c])
        image += np.float32(imaging.background[c])
        sigma = np.maximum(image, 0.0)
        sigma *= np.float32(COUNTS_PER_PHOTON)
        sigma += np.float32(READ_NOISE**2)
        np.sqrt(sigma, out=sigma)
        sigma *= rng.standard_normal((height, width), dtype=np.float32)
        image += sigma
        np.rint(image, out=image)
        np.clip(image, 0, 65535, out=image)
        out[c] = image
    return out


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """White noise blurred with `sigma`, rescaled to unit standard deviation."""
    field = ndi.gaussian_filter(
        rng.standard_normal(shape, dtype=np.float32), sigma, truncate=TRUNCATE
    )
    # Std of Gaussian-smoothed unit white noise in 2-d is 1 / (2 √π σ).
    return field * np.float32(2.0 * np.sqrt(np.pi) * sigma)


def _raster_nuclei(
    cells: FieldCells, scale: float, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """(label, rho): nucleus index per pixel (-1 = none) and its normalised radius (0 centre,
    1 edge). Overlapping nuclei: each pixel goes to the nucleus it is deepest inside."""
    label = np.full(height * width, -1, dtype=np.int32)
    rho_image = np.ones(height * width, dtype=np.float32)
    m = cells.n_nuclei
    if m == 0:
        return label.reshape(height, width), rho_image.reshape(height, width)
    cx, cy = cells.nucleus_x * scale, cells.nucleus_y * scale
    a = np.maximum(cells.nucleus_a * scale, 0.3)
    b = np.maximum(cells.nucleus_b * scale, 0.3)
    half = int(np.ceil(np.max(a * (1 + cells.lobe_amplitude)))) + 1
    offsets = np.arange(-half, half + 1)
    dy, dx = (g.ravel() for g in np.meshgrid(offsets, offsets, indexing="ij"))
    col = np.rint(cx).astype(np.int64)[:, None] + dx[None, :]  # (m, P)
    row = np.rint(cy).astype(np.int64)[:, None] + dy[None, :]
    u, v = col - cx[:, None], row - cy[:, None]
    cos, sin = np.cos(cells.nucleus_angle)[:, None], np.sin(cells.nucleus_angle)[:, None]
    along, across = (u * cos + v * sin) / a[:, None], (-u * sin + v * cos) / b[:, None]
    phi = np.arctan2(across, along)
    lobes = 1 + cells.lobe_amplitude[:, None] * np.cos(
        cells.lobe_count[:, None] * phi + cells.lobe_phase[:, None]
    )
    rho = np.hypot(along, across) / lobes
    inside = (rho < 1) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
    flat = (row * width + col)[inside]
    rho_in = rho[inside]
    index = np.broadcast_to(np.arange(m)[:, None], rho.shape)[inside]
    order = np.lexsort((rho_in, flat))
    flat, first = np.unique(flat[order], return_index=True)
    label[flat] = index[order][first]
    rho_image[flat] = rho_in[order][first]
    return label.reshape(height, width), rho_image.reshape(height, width)


def _territories(
    cells: FieldCells,
    scale: float,
    nucleus_label: np.ndarray,
    xx: np.ndarray,
    yy: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(cell_label, q): cell index per pixel (-1 outside cells) and q = distance from the
    nucleus edge / the cell's reach there (0..1 in the cell body, 2 far from any cell)."""
    shape = nucleus_label.shape
    if cells.n_nuclei == 0:
        return np.full(shape, -1, dtype=np.int32), np.full(shape, 2.0, dtype=np.float32)
    # Nearest nucleus pixel of every pixel (the feature transform); distances follow from it.
    iy, ix = ndi.distance_transform_edt(
        nucleus_label < 0, return_distances=False, return_indices=True
    )
    squared = (iy - yy) ** 2 + (ix - xx) ** 2  # float32 (H, W)
    q = np.full(shape, 2.0, dtype=np.float32)
    cell_label = np.full(shape, -1, dtype=np.int32)
    # Only pixels within the largest possible reach can belong to a cell.
    harmonics = cells.outline[:, 0] + cells.outline[:, 2]
    farthest = float(np.max(cells.thickness * (1 + harmonics))) * scale + 1
    near = np.flatnonzero(squared.ravel() <= farthest**2)
    nearest = nucleus_label.ravel()[iy.ravel()[near] * shape[1] + ix.ravel()[near]]
    who = cells.nucleus_cell[nearest].astype(np.int32)
    distance = np.sqrt(squared.ravel()[near])
    dx = xx.ravel()[near] - (cells.x * scale).astype(np.float32)[who]
    dy = yy.ravel()[near] - (cells.y * scale).astype(np.float32)[who]
    r = np.maximum(np.hypot(dx, dy), 1e-6)
    c, s = dx / r, dy / r  # cos and sin of the pixel's angle around the cell centre
    cos2, sin2 = 2 * c * c - 1, 2 * s * c
    cos3, sin3 = c * (4 * c * c - 3), s * (3 - 4 * s * s)
    a2, p2, a3, p3 = cells.outline.T
    # 1 + a2·cos(2θ − p2) + a3·cos(3θ − p3), expanded to avoid trigonometry per pixel.
    terms = np.stack([a2 * np.cos(p2), a2 * np.sin(p2), a3 * np.cos(p3), a3 * np.sin(p3)])
    t = terms.astype(np.float32)[:, who]
    shape_factor = 1 + t[0] * cos2 + t[1] * sin2 + t[2] * cos3 + t[3] * sin3
    reach = np.maximum(cells.thickness.astype(np.float32)[who] * scale * shape_factor, 0.5)
    q_near = distance / reach
    q.ravel()[near] = q_near
    cell_label.ravel()[near] = np.where(q_near <= 1.0, who, -1)
    return cell_label, q


def _dapi_signal(
    cells: FieldCells, label: np.ndarray, rho: np.ndarray, texture: np.ndarray
) -> np.ndarray:
    """Nuclei: a dome (or, for monopolar mitoses, a ring) times chromatin texture."""
    signal = np.zeros(label.shape, dtype=np.float32)
    pixels = np.flatnonzero(label.ravel() >= 0)
    if len(pixels) == 0:
        return signal
    index = label.ravel()[pixels]
    r = rho.ravel()[pixels]
    ring = cells.is_ring[cells.nucleus_cell][index]
    dome = 1.0 - 0.3 * r**2
    # Monopolar spindle: chromosomes in a ring around a dimmer centre.
    ring_profile = 0.5 + 0.7 * np.exp(-(((r - 0.62) / 0.22) ** 2))
    profile = np.where(ring, ring_profile, dome)
    grain = np.maximum(1.0 + cells.chromatin[index] * texture.ravel()[pixels], 0.0)
    signal.ravel()[pixels] = cells.dapi_level[index] * profile * grain
    return signal


def _filaments(
    canvas: _Canvas,
    layer: str,
    cell: np.ndarray,
    origin_x: np.ndarray,
    origin_y: np.ndarray,
    start_angle: np.ndarray,
    sweep: np.ndarray,
    r0: np.ndarray,
    r1: np.ndarray,
    amplitude: np.ndarray,
    sigma: float,
    cell_label: np.ndarray,
) -> None:
    """Splat filaments (pixel units) drawn in polar form around their origin:
    angle(t) = start + t·sweep, radius(t) = r0 + t·(r1 − r0), t ∈ [0, 1]; only the part
    inside the filament's own cell is kept. Weights give a blurred peak ≈ amplitude at the
    origin end, fading to 40 % at the far end (filaments are denser near their origin)."""
    if len(cell) == 0:
        return
    length = np.hypot(r1 - r0, 0.5 * (r0 + r1) * sweep)
    points = _points_for(length)
    t = np.linspace(0.0, 1.0, points)[None, :]
    angle = start_angle[:, None] + t * sweep[:, None]
    radius = r0[:, None] + t * (r1 - r0)[:, None]
    x = origin_x[:, None] + radius * np.cos(angle)
    y = origin_y[:, None] + radius * np.sin(angle)
    spacing = np.maximum(length / (points - 1), 1e-3)
    weight = (amplitude * spacing * np.sqrt(2 * np.pi) * sigma)[:, None] * (1 - 0.6 * t)
    _splat_in_cell(canvas, layer, cell, x, y, weight, cell_label)


def _points_for(length: np.ndarray) -> int:
    """Samples per filament so that the longest one is sampled every POINT_SPACING px."""
    return int(np.clip(np.ceil(np.max(length) / POINT_SPACING), 4, 1000)) + 1


def _splat_in_cell(
    canvas: _Canvas,
    layer: str,
    cell: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    cell_label: np.ndarray,
) -> None:
    """Splat points (rows of x, y belong to `cell`) that fall inside their own cell."""
    col = np.rint(x).astype(np.int64)
    row = np.rint(y).astype(np.int64)
    height, width = cell_label.shape
    ok = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    owner = np.full(x.shape, -2, dtype=np.int64)
    owner[ok] = cell_label[row[ok], col[ok]]
    keep = owner == np.broadcast_to(cell[:, None], x.shape)
    canvas.splat(layer, x[keep], y[keep], w[keep])


def _draw_tubulin(
    canvas: _Canvas,
    cells: FieldCells,
    scale: float,
    cell_label: np.ndarray,
    body: np.ndarray,
    q: np.ndarray,
    texture: np.ndarray,
    rng: np.random.Generator,
    psf: float,
    thick: float,
) -> None:
    """Diffuse tubulin (brighter near the nucleus) plus microtubules: a fine radial network,
    or thick bundles wrapping the nucleus; mitotic cells show a spindle (bipolar, or
    monopolar for ring cells) unless microtubules are depolymerised; plus aggregates."""
    if cells.n_cells == 0:
        return
    level, fibres = cells.tubulin_level, cells.tubulin_fibres
    bundling = cells.tubulin_bundling
    mitotic = cells.is_mitotic
    diffuse = TUBULIN_DIFFUSE * level * (0.35 + 0.9 * (1 - fibres)) * np.where(mitotic, 1.8, 1.0)
    who = cell_label.ravel()[body]
    near_nucleus = 0.55 + 0.45 * np.exp(-2.0 * q.ravel()[body])
    canvas.base.ravel()[body] = diffuse[who] * near_nucleus * (1 + 0.2 * texture.ravel()[body])

    radius = cells.nucleus_radius * scale
    reach = cells.thickness * scale
    cx, cy = cells.x * scale, cells.y * scale
    # Interphase microtubules: ~40 per cell at full network.
    count = np.where(mitotic, 0, rng.poisson(40 * fibres))
    cell = np.repeat(np.arange(cells.n_cells), count)
    k = len(cell)
    b = bundling[cell]
    direction = rng.choice([-1.0, 1.0], k)
    sweep = (1 - b) * rng.normal(0, 0.35, k) + b * direction * rng.uniform(0.8, 1.6, k)
    r0 = radius[cell] * (0.8 + 0.3 * b)
    r1 = radius[cell] + reach[cell] * (
        (1 - b) * rng.uniform(0.7, 1.1, k) + b * rng.uniform(0.2, 0.5, k)
    )
    amplitude = TUBULIN_FIBRE * level[cell] * (1 + 1.5 * b)
    start = rng.uniform(0, 2 * np.pi, k)
    fine = b < 0.5
    for layer, pick, sigma in (("sharp", fine, psf), ("thick", ~fine, thick)):
        _filaments(
            canvas,
            layer,
            cell[pick],
            cx[cell][pick],
            cy[cell][pick],
            start[pick],
            sweep[pick],
            r0[pick],
            r1[pick],
            amplitude[pick],
            sigma,
            cell_label,
        )

    # Mitotic spindles: 2 poles (1 for ring cells), 8 short rays each, if fibres remain.
    spindle = mitotic & (rng.random(cells.n_cells) < fibres)
    poles_per_cell = np.where(cells.is_ring, 1, 2)[spindle]
    spindle_cells = np.repeat(np.flatnonzero(spindle), poles_per_cell * 8)
    k = len(spindle_cells)
    if k:
        axis = np.repeat(rng.uniform(0, np.pi, spindle.sum()), poles_per_cell * 8)
        pole_sign = np.concatenate([np.repeat([1.0, -1.0][:p], 8) for p in poles_per_cell])
        offset = np.where(cells.is_ring[spindle_cells], 0.0, 0.8 * radius[spindle_cells])
        ox = cx[spindle_cells] + pole_sign * offset * np.cos(axis)
        oy = cy[spindle_cells] + pole_sign * offset * np.sin(axis)
        _filaments(
            canvas,
            "thick",
            spindle_cells,
            ox,
            oy,
            rng.uniform(0, 2 * np.pi, k),
            np.zeros(k),
            np.zeros(k),
            radius[spindle_cells] * 1.1,
            np.full(k, 2.5 * TUBULIN_FIBRE) * level[spindle_cells],
            thick,
            cell_label,
        )

    # Aggregates: a blob (~12 px across at scale 1) beside the nucleus, as 12 jittered
    # points; brightness ∝ tubulin_aggregate.
    points = 12
    has = rng.random(cells.n_cells) < np.minimum(1.0, 3 * cells.tubulin_aggregate)
    blob_cells = np.repeat(np.flatnonzero(has), points)
    if len(blob_cells):
        side = np.repeat(rng.uniform(0, 2 * np.pi, has.sum()), points)
        distance = 1.2 * radius[blob_cells]
        spread = 3.0 * scale
        jitter = rng.normal(0.0, spread, (2, len(blob_cells)))
        x = cx[blob_cells] + distance * np.cos(side) + jitter[0]
        y = cy[blob_cells] + distance * np.sin(side) + jitter[1]
        peak = TUBULIN_AGGREGATE * level[blob_cells] * cells.tubulin_aggregate[blob_cells]
        weight = peak * 2 * np.pi * (thick**2 + spread**2) / points
        _splat_in_cell(
            canvas, "thick", blob_cells, x[:, None], y[:, None], weight[:, None], cell_label
        )


def _draw_actin(
    canvas: _Canvas,
    cells: FieldCells,
    scale: float,
    cell_label: np.ndarray,
    body: np.ndarray,
    texture: np.ndarray,
    rng: np.random.Generator,
    psf: float,
    thick: float,
) -> None:
    """Diffuse actin, a cortex along cell edges and junctions, stress fibres (straight,
    parallel chords across the cell) and puncta."""
    if cells.n_cells == 0:
        return
    level = cells.actin_level
    who = cell_label.ravel()[body]
    image = ACTIN_DIFFUSE * level[who] * (1 + 0.25 * texture.ravel()[body])
    # Cortex: cell pixels whose 4-neighbourhood holds another label (edge or junction).
    height, width = cell_label.shape
    padded = np.pad(cell_label, 1, mode="edge").ravel()
    row, col = np.divmod(body, width)
    centre = (row + 1) * (width + 2) + col + 1
    edge = (
        (padded[centre - 1] != who)
        | (padded[centre + 1] != who)
        | (padded[centre - width - 2] != who)
        | (padded[centre + width + 2] != who)
    )
    # A 1-px edge stands for a ~1.5 px (full-resolution) cortex: dimmer when pixels are small.
    cortex = ACTIN_CORTEX * (level * cells.actin_cortex)[who] * min(1.0, 1.5 * scale)
    canvas.base.ravel()[body] = image + np.where(edge, cortex, 0.0)

    radius = cells.nucleus_radius * scale
    span = radius + cells.thickness * scale
    cx, cy = cells.x * scale, cells.y * scale
    count = rng.poisson(7 * cells.actin_fibres)
    cell = np.repeat(np.arange(cells.n_cells), count)
    k = len(cell)
    if k:
        angle = cells.fibre_angle[cell] + rng.normal(0, 0.12, k)
        across = rng.uniform(-0.8, 0.8, k) * span[cell]
        points = _points_for(2 * span[cell])
        t = np.linspace(-1.0, 1.0, points)[None, :] * span[cell][:, None]
        x = (
            cx[cell][:, None]
            - across[:, None] * np.sin(angle)[:, None]
            + t * np.cos(angle)[:, None]
        )
        y = (
            cy[cell][:, None]
            + across[:, None] * np.cos(angle)[:, None]
            + t * np.sin(angle)[:, None]
        )
        spacing = 2 * span[cell] / (points - 1)
        weight = ACTIN_FIBRE * level[cell] * spacing * np.sqrt(2 * np.pi) * psf
        _splat_in_cell(
            canvas, "sharp", cell, x, y, np.broadcast_to(weight[:, None], x.shape), cell_label
        )

    count = rng.poisson(5 * cells.actin_puncta)
    cell = np.repeat(np.arange(cells.n_cells), count)
    if len(cell):
        where = rng.uniform(0, 2 * np.pi, len(cell))
        distance = radius[cell] + rng.uniform(0.1, 0.9, len(cell)) * cells.thickness[cell] * scale
        x = cx[cell] + distance * np.cos(where)
        y = cy[cell] + distance * np.sin(where)
        weight = ACTIN_PUNCTUM * level[cell] * 2 * np.pi * thick**2
        _splat_in_cell(canvas, "thick", cell, x[:, None], y[:, None], weight[:, None], cell_label)


def _illumination(
    imaging: Imaging, xx: np.ndarray, yy: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Relative illumination: 1 at the peak, 1 − vignetting at the far corner, tilted."""
    fx, fy = xx / width - imaging.centre[0], yy / height - imaging.centre[1]
    corner = max(
        (cx - imaging.centre[0]) ** 2 + (cy - imaging.centre[1]) ** 2
        for cx in (0.0, 1.0)
        for cy in (0.0, 1.0)
    )
    radial = 1.0 - imaging.vignetting * (fx**2 + fy**2) / corner
    tilt = 1.0 + imaging.tilt[0] * (xx / width - 0.5) + imaging.tilt[1] * (yy / height - 0.5)
    return (radial * tilt).astype(np.float32)
