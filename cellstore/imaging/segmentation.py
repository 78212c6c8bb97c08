"""Nucleus detection on DAPI and cell propagation from nuclei (scikit-image / scipy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellstore.imaging.arrays import block_mean


@dataclass(frozen=True)
class NucleusParams:
    """Detection settings, in pixels of the image being segmented.

    diameter: typical nucleus diameter; sets the working resolution (images are block-mean
        downscaled so a nucleus spans ~`work_diameter` px), the smoothing and the minimum
        distance between two nucleus centres.
    smoothing: Gaussian σ of the DAPI smoothing, as a fraction of the diameter.
    distance_smoothing: Gaussian σ applied to the distance transform, as a fraction of the
        diameter (merges the several maxima of a lobed nucleus into one).
    min_separation: two nucleus centres are at least this fraction of a diameter apart.
    min_area_fraction: objects smaller than this fraction of a typical nucleus' area are
        debris and dropped.
    min_contrast: nuclei must stand this many background standard deviations above the
        background (see `foreground`); a field that does not has no nuclei.
    """

    diameter: float = 20.0
    work_diameter: float = 10.0
    smoothing: float = 1 / 16
    distance_smoothing: float = 0.1
    min_separation: float = 0.3
    min_area_fraction: float = 0.2
    min_contrast: float = 6.0

    def factor(self) -> int:
        return max(1, int(self.diameter // self.work_diameter))


@dataclass(frozen=True)
class Nuclei:
    """Detected nuclei: a label image at `factor`-times reduced resolution, and per-nucleus
    measurements in full-resolution pixels (arrays of length N, nucleus k has label k + 1)."""

    labels: np.ndarray  # (H // factor, W // factor) int32, 0 = background
    factor: int
    x: np.ndarray  # float64 centroid column, full-resolution px
    y: np.ndarray  # float64 centroid row, full-resolution px
    area: np.ndarray  # float64, full-resolution px²
    mean_intensity: np.ndarray  # float64, of the image given to detect_nuclei
    touches_border: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.x)


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(values))


def foreground(smoothed: np.ndarray, min_contrast: float = 0.0) -> np.ndarray:
    """Pixels above the Otsu threshold (computed on a 4× strided subsample: same value,
    16× cheaper).

    min_contrast: the two Otsu classes must differ in mean by at least this many standard
    deviations of the darker class, else nothing is foreground. Otsu splits pure noise too
    (at ~2.7 σ), while real objects sit far above their background: this is what turns a
    field without cells into "no nuclei" rather than a field of noise blobs.
    """
    sample = smoothed[::4, ::4]
    if sample.max() <= sample.min():
        return np.zeros(smoothed.shape, bool)
    threshold = _otsu(sample)
    if min_contrast > 0:
        dark, bright = sample[sample <= threshold], sample[sample > threshold]
        spread = float(dark.std()) if dark.size > 1 else 0.0
        if bright.size == 0 or float(bright.mean()) - float(dark.mean()) < min_contrast * spread:
            return np.zeros(smoothed.shape, bool)
    return smoothed > threshold


def _smoothed_distance(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Euclidean distance to the background, Gaussian-smoothed (float32).

    Computed per connected object inside its bounding box (+1 px): nuclei cover a few % of
    a field, so this is ~4× cheaper than one transform of the whole image, and identical
    (the box margin holds the background nearest to any pixel of the object; as for the
    whole image, the image edge itself does not count as background).
    """
    from scipy import ndimage as ndi

    objects, _ = ndi.label(mask)
    distance = np.zeros(mask.shape, np.float32)
    height, width = mask.shape
    for index, box in enumerate(ndi.find_objects(objects), start=1):
        if box is None:
            continue
        rows = slice(max(box[0].start - 1, 0), min(box[0].stop + 1, height))
        cols = slice(max(box[1].start - 1, 0), min(box[1].stop + 1, width))
        inside = objects[rows, cols] == index
        distance[rows, cols][inside] = ndi.distance_transform_edt(inside)[inside]
    return ndi.gaussian_filter(distance, sigma) if sigma > 0 else distance


def _peak_markers(distance: np.ndarray, mask: np.ndarray, min_distance: int) -> np.ndarray:
    """Int32 markers at local maxima of `distance` (one per connected plateau).

    A pixel is a peak when it equals the maximum of its (2 * min_distance + 1)² window;
    ties on a plateau are merged by connectivity. Cheaper than peak_local_max here.
    """
    from scipy import ndimage as ndi

    size = 2 * max(1, min_distance) + 1
    peaks = (distance == ndi.maximum_filter(distance, size=size)) & mask & (distance > 0)
    markers, _ = ndi.label(peaks, structure=np.ones((3, 3), bool))
    return markers.astype(np.int32, copy=False)


def _relabel_sequential(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Keep labels where keep[label] is True (keep[0] ignored), renumbered 1..K in order."""
    lookup = np.zeros(len(keep), np.int32)
    kept = np.flatnonzero(keep)
    kept = kept[kept > 0]
    lookup[kept] = np.arange(1, len(kept) + 1, dtype=np.int32)
    return lookup[labels]


def detect_nuclei(
    dapi: np.ndarray, params: NucleusParams | None = None, illumination: np.ndarray | None = None
) -> Nuclei:
    """Find nuclei in a DAPI image; touching nuclei are split.

    illumination: the correction function at the working resolution, shape
    (H // f, W // f) with f = params.factor() (`block_mean` of the full-resolution one);
    dividing there is as good as at full resolution for a smooth function, and cheaper.
    Steps: block-mean downscale → illumination correction → Gaussian smoothing → Otsu
    foreground → Euclidean distance transform (smoothed) → markers at distance maxima at
    least `min_separation` diameters apart → watershed on −distance inside the foreground →
    drop objects under `min_area_fraction` of a typical nucleus.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    params = params or NucleusParams()
    factor = params.factor()
    work = block_mean(dapi, factor)
    if illumination is not None:
        if illumination.shape != work.shape:
            raise ValueError(
                f"illumination function {illumination.shape} != working image {work.shape}"
            )
        work /= illumination
    diameter = params.diameter / factor
    smoothed = ndi.gaussian_filter(work, sigma=max(0.5, params.smoothing * diameter))
    mask = foreground(smoothed, params.min_contrast)
    distance = _smoothed_distance(mask, params.distance_smoothing * diameter)
    separation = max(1, int(round(params.min_separation * diameter)))
    markers = _peak_markers(distance, mask, min_distance=separation)
    labels = watershed(-distance, markers, mask=mask).astype(np.int32, copy=False)
    min_area = params.min_area_fraction * np.pi * (diameter / 2) ** 2
    return measure_nuclei(labels, work, factor, min_area)


def measure_nuclei(
    labels: np.ndarray, intensity: np.ndarray, factor: int, min_area: float = 0.0
) -> Nuclei:
    """Drop labels smaller than `min_area` (working px²), renumber, and measure the rest."""
    n = int(labels.max())
    inside = np.flatnonzero(labels)  # nuclei cover a few % of the field: skip background
    owner = labels.ravel()[inside]
    area = np.bincount(owner, minlength=n + 1).astype(np.float64)
    keep = area >= max(min_area, 1.0)
    keep[0] = False
    if not keep[1:].all():
        labels = _relabel_sequential(labels, keep)
        n = int(labels.max())
        inside = np.flatnonzero(labels)
        owner = labels.ravel()[inside]
        area = np.bincount(owner, minlength=n + 1).astype(np.float64)
    rows, cols = np.divmod(inside, labels.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = np.bincount(owner, weights=rows, minlength=n + 1) / area
        cx = np.bincount(owner, weights=cols, minlength=n + 1) / area
        mean = np.bincount(owner, weights=intensity.ravel()[inside], minlength=n + 1) / area
    edge = np.zeros(n + 1, bool)
    edge[np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))] = True
    # Working pixel (r, c) covers full-resolution pixels r*f .. r*f + f - 1: centre r*f + (f-1)/2.
    offset = (factor - 1) / 2
    return Nuclei(
        labels=labels,
        factor=factor,
        x=cx[1:] * factor + offset,
        y=cy[1:] * factor + offset,
        area=area[1:] * factor * factor,
        mean_intensity=mean[1:],
        touches_border=edge[1:],
    )


def nuclei_from_centres(
    dapi: np.ndarray, x: np.ndarray, y: np.ndarray, params: NucleusParams
) -> np.ndarray:
    """Full-resolution nucleus labels grown from known centres (label k + 1 for centre k).

    The watershed on −distance inside the Otsu foreground reproduces `detect_nuclei`'s
    regions from its recorded centres; a centre that falls on background keeps a 1-px region
    so every nucleus row gets a (tiny) mask.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    image = dapi.astype(np.float32, copy=False)
    smoothed = ndi.gaussian_filter(image, sigma=max(0.5, params.smoothing * params.diameter))
    mask = foreground(smoothed)
    markers = _centre_markers(image.shape, x, y)
    mask |= markers > 0
    distance = _smoothed_distance(mask, params.distance_smoothing * params.diameter)
    return watershed(-distance, markers, mask=mask).astype(np.int32, copy=False)


def _centre_markers(shape: tuple[int, ...], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    markers = np.zeros(shape, np.int32)
    rows = np.clip(np.round(np.asarray(y)).astype(np.intp), 0, shape[0] - 1)
    cols = np.clip(np.round(np.asarray(x)).astype(np.intp), 0, shape[1] - 1)
    markers[rows, cols] = np.arange(1, len(rows) + 1, dtype=np.int32)
    return markers


def propagate_cells(
    nuclei_labels: np.ndarray, cytoplasm: np.ndarray, max_distance: float
) -> np.ndarray:
    """Cell labels grown from nuclei over the cytoplasm image (CellProfiler-style secondary
    objects): watershed on the inverted smoothed cytoplasm signal, inside its Otsu foreground
    and within `max_distance` px of a nucleus. Every cell contains its whole nucleus."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    smoothed = ndi.gaussian_filter(cytoplasm.astype(np.float32, copy=False), sigma=2.0)
    near = ndi.distance_transform_edt(nuclei_labels == 0) <= max_distance
    mask = (foreground(smoothed) & near) | (nuclei_labels > 0)
    cells = watershed(-smoothed, nuclei_labels, mask=mask).astype(np.int32, copy=False)
    # Watershed can hand a nucleus pixel to a neighbour's basin; nuclei win their own pixels.
    inside = nuclei_labels > 0
    cells[inside] = nuclei_labels[inside]
    return cells
