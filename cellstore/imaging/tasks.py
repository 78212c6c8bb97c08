"""Work run on dask workers, per stage: a batch of fields in, one Parquet part out."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from cellstore.imaging import fieldio
from cellstore.imaging.fieldio import CHANNELS, FieldRejected, QualityLimits
from cellstore.imaging.fields import (
    NO_QUALITY_LIMITS,
    Geometry,
    PlateIllumination,
    iter_fields,
    read_checked,
)
from cellstore.imaging.illumination import MeanImage, full_resolution
from cellstore.imaging.parts import TaskResult, rejected_row, write_part

# CellProfiler-style channel names used in feature columns.
FEATURE_CHANNELS = {"dapi": "DAPI", "tubulin": "Tubulin", "actin": "Actin"}


# ---- illumination ----------------------------------------------------------------------


def illumination_sums(batch: Any, downscale: int, limits: QualityLimits) -> TaskResult:
    """Sum the downscaled channel images of a batch of one plate's fields (bad ones skipped)."""
    started = time.perf_counter()
    sums = {c: MeanImage() for c in CHANNELS}
    rejected: list[dict[str, str]] = []
    n_fields = 0
    first = ""  # the batch's first field: the driver adds partial sums in this order
    for item in iter_fields(batch):
        n_fields += 1
        first = first or item.image_id
        try:
            images = read_checked(item, limits)
        except FieldRejected as error:
            rejected.append(rejected_row(item, error))
            continue
        for channel, image in images.items():
            sums[channel].add(image, downscale)
    elapsed = time.perf_counter() - started
    plate = _plate_of(batch)
    return TaskResult(None, n_fields, 0, rejected, elapsed, plate=plate, extra=(first, sums))


def illumination_limits(
    batch: Any,
    functions: PlateIllumination,
    percentiles: tuple[float, float],
    limits: QualityLimits,
) -> TaskResult:
    """Pooled (low, high) percentiles of corrected intensities over a sample of fields."""
    started = time.perf_counter()
    samples: dict[str, list[np.ndarray]] = {c: [] for c in CHANNELS}
    n_fields = 0
    first = ""  # the batch's first field: the driver adds partial sums in this order
    for item in iter_fields(batch):
        n_fields += 1
        first = first or item.image_id
        try:
            images = read_checked(item, limits)
        except FieldRejected:
            continue  # already recorded by the sums pass
        for channel, image in images.items():
            corrected = image / functions.function(channel, image.shape)
            samples[channel].append(corrected[::4, ::4].ravel())
    result: dict[str, tuple[float, float]] = {}
    for channel, pieces in samples.items():
        if pieces:
            low, high = np.percentile(np.concatenate(pieces), percentiles)
            result[channel] = (float(low), float(max(high, low + 1e-6)))
    elapsed = time.perf_counter() - started
    return TaskResult(None, n_fields, 0, [], elapsed, plate=_plate_of(batch), extra=result)


def _plate_of(batch: Any) -> str:
    return batch["plate"][0].as_py() if batch.num_rows else ""


# ---- nuclei ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NucleiSettings:
    nucleus_diameter: float = 20.0
    geometry: Geometry = Geometry()
    quality: QualityLimits = QualityLimits()

    def params(self, width: int) -> Any:
        from cellstore.imaging.segmentation import NucleusParams

        return NucleusParams(diameter=self.nucleus_diameter * self.geometry.scale(width))


def nuclei_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("image_id", pa.string()),
            ("cell_id", pa.string()),
            ("object_number", pa.int32()),
            ("plate", pa.string()),
            ("well", pa.string()),
            ("x", pa.float32()),
            ("y", pa.float32()),
            ("area", pa.float32()),
            ("mean_intensity", pa.float32()),
            ("integrated_intensity", pa.float32()),
            ("touches_border", pa.bool_()),
        ]
    )


def _cell_ids(image_id: str, numbers: np.ndarray) -> list[str]:
    return [f"{image_id}_{n}" for n in numbers.tolist()]


def nuclei_task(
    batch: Any, plate: PlateIllumination, settings: NucleiSettings, out_path: str
) -> TaskResult:
    """Detect nuclei in every field of the batch; write one row per nucleus to `out_path`."""
    import pyarrow as pa

    from cellstore.imaging.segmentation import detect_nuclei

    def measure(item: Any, images: dict[str, np.ndarray]) -> Any:
        params = settings.params(item.shape[1])
        found = detect_nuclei(
            images["dapi"],
            params,
            illumination=plate.function("dapi", item.shape, params.factor()),
        )
        if len(found) == 0:
            raise FieldRejected(fieldio.NO_NUCLEI, "no nucleus found on DAPI")
        n = len(found)
        numbers = np.arange(1, n + 1, dtype=np.int32)
        return pa.table(
            {
                "image_id": [item.image_id] * n,
                "cell_id": _cell_ids(item.image_id, numbers),
                "object_number": numbers,
                "plate": [item.plate] * n,
                "well": [item.well] * n,
                "x": found.x.astype(np.float32),
                "y": found.y.astype(np.float32),
                "area": found.area.astype(np.float32),
                "mean_intensity": found.mean_intensity.astype(np.float32),
                "integrated_intensity": (found.mean_intensity * found.area).astype(np.float32),
                "touches_border": found.touches_border,
            }
        )

    return _run_fields(batch, settings.quality, measure, nuclei_schema(), out_path)


def _run_fields(
    batch: Any,
    quality: Any,
    measure: Callable[[Any, dict[str, np.ndarray]], Any],
    schema: Any,
    out_path: str,
) -> TaskResult:
    """The loop every field task shares: read and check each field, measure it into a table
    (or reject it with a reason), then write one Parquet part."""
    started = time.perf_counter()
    tables, rejected, n_fields = [], [], 0
    for item in iter_fields(batch):
        n_fields += 1
        try:
            tables.append(measure(item, read_checked(item, quality)))
        except FieldRejected as error:
            rejected.append(rejected_row(item, error))
    part = write_part(tables, schema, out_path)
    n_rows = sum(t.num_rows for t in tables)
    return TaskResult(part, n_fields, n_rows, rejected, time.perf_counter() - started)


# ---- crops -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CropSettings:
    box: int = 96
    border: str = "pad"
    normalization: str = "plate"  # "plate": illumination table limits; "image": per field
    percentiles: tuple[float, float] = (0.1, 99.9)  # used when normalization == "image"
    geometry: Geometry = Geometry()

    def box_px(self, width: int) -> int:
        return max(2, int(round(self.box * self.geometry.scale(width))))


def crops_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("image_id", pa.string()),
            ("cell_id", pa.string()),
            ("object_number", pa.int32()),
            ("plate", pa.string()),
            ("well", pa.string()),
            ("x", pa.float32()),
            ("y", pa.float32()),
            ("is_border", pa.bool_()),
            ("crop", pa.binary()),
            ("shape", pa.list_(pa.int32())),
            ("dtype", pa.string()),
        ]
    )


@lru_cache(maxsize=16)
def _plate_gain(
    buffer: bytes,
    small_shape: tuple[int, int],
    dtype: str,
    shape: tuple[int, int],
    low: float,
    high: float,
) -> tuple[np.ndarray, float]:
    """raw → uint8 gain image and offset of one plate × channel (cached per worker)."""
    from cellstore.imaging.crops import gain_offset

    gain, offset = gain_offset(full_resolution(buffer, small_shape, dtype, shape), low, high)
    gain.setflags(write=False)
    return gain, offset


def normalized_stack(
    images: dict[str, np.ndarray], plate: PlateIllumination, settings: CropSettings
) -> np.ndarray:
    """(C, H, W) uint8: illumination-corrected, then [low, high] → [0, 255] per channel."""
    from cellstore.imaging.crops import gain_offset, intensity_limits, to_uint8

    shape = next(iter(images.values())).shape
    stack = np.empty((len(CHANNELS), *shape), np.uint8)
    for index, channel in enumerate(CHANNELS):
        raw = images[channel]
        if settings.normalization == "plate":
            if channel not in plate.limits:
                raise ValueError(f"illumination: plate {plate.plate} has no {channel} limits")
            buffer, small_shape, dtype = plate.functions[channel]
            low, high = plate.limits[channel]
            gain, offset = _plate_gain(buffer, tuple(small_shape), dtype, shape, low, high)
        else:
            function = plate.function(channel, shape)
            low, high = intensity_limits(raw / function, *settings.percentiles)
            gain, offset = gain_offset(function, low, high)
        stack[index] = to_uint8(raw, gain, offset)
    return stack


def crops_task(
    batch: Any, plate: PlateIllumination, settings: CropSettings, out_path: str
) -> TaskResult:
    """Cut one normalised 3-channel crop per nucleus row of the batch into `out_path`."""
    import pyarrow as pa

    from cellstore.imaging.crops import binary_column, crop_boxes

    def measure(item: Any, images: dict[str, np.ndarray]) -> Any:
        stack = normalized_stack(images, plate, settings)
        rows = item.rows
        box = settings.box_px(item.shape[1])
        crops, is_border = crop_boxes(
            stack,
            rows["x"].to_numpy(),
            rows["y"].to_numpy(),
            box,
            settings.border,
        )
        n = len(crops)
        return pa.table(
            {
                "image_id": rows["image_id"],
                "cell_id": rows["cell_id"],
                "object_number": rows["object_number"],
                "plate": rows["plate"],
                "well": rows["well"],
                "x": rows["x"],
                "y": rows["y"],
                "is_border": is_border,
                "crop": binary_column(crops),
                "shape": _constant_shape(n, crops.shape[1:]),
                "dtype": pa.array(["uint8"] * n, pa.string()),
            }
        )

    return _run_fields(batch, NO_QUALITY_LIMITS, measure, crops_schema(), out_path)


def _constant_shape(n: int, shape: tuple[int, ...]) -> Any:
    import pyarrow as pa

    values = pa.array(np.tile(np.asarray(shape, np.int32), n))
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * len(shape))
    return pa.ListArray.from_arrays(offsets, values)


# ---- cell features ---------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSettings:
    nucleus_diameter: float = 20.0
    cell_max_distance: float = 1.5  # in nucleus diameters, from the nucleus edge
    texture_distance: int = 3
    texture_levels: int = 16
    geometry: Geometry = Geometry()


def features_schema() -> Any:
    import pyarrow as pa

    from cellstore.imaging.features import feature_names

    keys = [(name, pa.string()) for name in ("image_id", "cell_id", "plate", "well")]
    names = feature_names(tuple(FEATURE_CHANNELS.values()))
    return pa.schema(keys + [(name, pa.float32()) for name in names])


def _unit_scale(image: np.ndarray) -> float:
    """CellProfiler measures integer images scaled to [0, 1] by their type's maximum."""
    return float(np.iinfo(image.dtype).max) if image.dtype.kind in "ui" else 1.0


def features_task(
    batch: Any, plate: PlateIllumination, settings: FeatureSettings, out_path: str
) -> TaskResult:
    """Segment nuclei (from the recorded centres) and cells, and measure every cell."""
    import pyarrow as pa

    from cellstore.imaging.features import TextureParams, measure_cells
    from cellstore.imaging.illumination import correct
    from cellstore.imaging.segmentation import (
        NucleusParams,
        nuclei_from_centres,
        propagate_cells,
    )

    def measure(item: Any, raw: dict[str, np.ndarray]) -> Any:
        scale = settings.geometry.scale(item.shape[1])
        diameter = settings.nucleus_diameter * scale
        images, limits = {}, {}
        for channel, name in FEATURE_CHANNELS.items():
            unit = _unit_scale(raw[channel])
            images[name] = correct(raw[channel], plate.function(channel, item.shape)) / unit
            low, high = plate.limits.get(channel, (0.0, unit))
            limits[name] = (low / unit, high / unit)
        rows = item.rows
        nuclei = nuclei_from_centres(
            images["DAPI"],
            rows["x"].to_numpy(),
            rows["y"].to_numpy(),
            NucleusParams(diameter=diameter),
        )
        cells = propagate_cells(
            nuclei, images["Tubulin"] + images["Actin"], settings.cell_max_distance * diameter
        )
        texture = TextureParams(
            limits, max(1, int(round(settings.texture_distance * scale))), settings.texture_levels
        )
        values = measure_cells(images, nuclei, cells, rows.num_rows, texture)
        columns = {name: rows[name] for name in ("image_id", "cell_id", "plate", "well")}
        return pa.table({**columns, **values})

    return _run_fields(batch, NO_QUALITY_LIMITS, measure, features_schema(), out_path)
