"""Driver side of the image stages: stream fields in plate order, run tasks, collect parts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cellstore.imaging.batches import compact, field_batches
from cellstore.imaging.columns import FIELD_COLUMNS
from cellstore.imaging.fieldio import CHANNELS, QualityLimits
from cellstore.imaging.fields import PlateIllumination
from cellstore.imaging.illumination import MeanImage, flat_function, illumination_function
from cellstore.imaging.parts import TaskResult, rejected_schema, write_empty_part
from cellstore.imaging.tasks import illumination_limits, illumination_sums

Progress = Callable[..., None]


def sql_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _require(relation: Any, columns: tuple[str, ...], table: str) -> None:
    missing = [c for c in columns if c not in relation.columns]
    if missing:
        raise ValueError(f"{table}: missing column(s) {missing}; has {relation.columns}")


def count_fields(relation: Any) -> int:
    return int(relation.aggregate("count(distinct image_id)").fetchone()[0])


CENTRE_COLUMNS = ("image_id", "cell_id", "object_number", "x", "y")


def plate_tables(fields: Any, centres: Any = None) -> Iterator[tuple[Any, int]]:
    """(rows, n_fields) plate after plate: the plate's fields (sorted by image_id) or, with
    `centres` (a nuclei relation), one row per nucleus of those fields, sorted by
    (image_id, object_number); n_fields counts all the plate's fields, with or without rows.

    Each plate is fetched with its own queries and joined here, in Arrow: memory follows
    the largest plate, not the dataset, and the inputs may live on different DuckDB
    connections (one open result per connection: a stream would end silently when another
    query runs on its connection). `centres` may also be the nuclei table's Parquet files
    (an object with `paths`, as a stage's `files=` input gives): each plate's nuclei are
    then read from the files (row groups of other plates skipped by their statistics)
    instead of with one query per plate.
    """
    plates = [row[0] for row in fields.aggregate("plate", "plate").order("plate").fetchall()]
    read_centres = None if centres is None else _centre_reader(centres)
    for plate in plates:
        where = f"plate = {sql_literal(plate)}"
        table = fields.filter(where).select(", ".join(FIELD_COLUMNS)).to_arrow_table()
        n_fields = pa_count_distinct(table)
        if read_centres is None:
            yield table.sort_by("image_id"), n_fields
            continue
        nuclei = read_centres(plate)
        joined = table.join(nuclei, "image_id", join_type="inner", use_threads=False)
        yield joined.sort_by([("image_id", "ascending"), ("object_number", "ascending")]), n_fields


def _centre_reader(centres: Any) -> Callable[[str], Any]:
    """plate → Arrow table of CENTRE_COLUMNS, from a relation or from Parquet files."""
    if hasattr(centres, "paths"):
        import pyarrow.dataset as ds

        dataset = ds.dataset(list(centres.paths), format="parquet")

        def from_files(plate: str) -> Any:
            return dataset.to_table(columns=list(CENTRE_COLUMNS), filter=ds.field("plate") == plate)

        return from_files

    def from_relation(plate: str) -> Any:
        where = f"plate = {sql_literal(plate)}"
        return centres.filter(where).select(", ".join(CENTRE_COLUMNS)).to_arrow_table()

    return from_relation


# ---- illumination lookup ---------------------------------------------------------------


def plate_illumination(illumination: Any, plate: str) -> PlateIllumination:
    """The stored functions and limits of one plate, from the `illumination` table."""
    rows = (
        illumination.filter(f"plate = {sql_literal(plate)}")
        .select("channel, function, shape, dtype, intensity_low, intensity_high")
        .fetchall()
    )
    if not rows:
        raise ValueError(f"illumination: no function for plate {plate!r}; build illumination")
    functions, limits = {}, {}
    for channel, buffer, shape, dtype, low, high in rows:
        functions[channel] = (bytes(buffer), tuple(shape), dtype)
        limits[channel] = (float(low), float(high))
    return PlateIllumination(plate, functions, limits)


class _PlateCache:
    """Holds only the current plate's illumination (fields arrive in plate order), sent to
    the workers once per plate rather than with every task (~1 MB at full size)."""

    def __init__(self, illumination: Any, pool: Any) -> None:
        self.illumination = illumination
        self.pool = pool
        self.plate: str | None = None
        self.shared: Any = None

    def get(self, plate: str) -> Any:
        if plate != self.plate:
            self.shared = None  # drop the previous plate's future before sharing the next
            self.shared = self.pool.share(plate_illumination(self.illumination, plate))
            self.plate = plate
        return self.shared


# ---- per-field stages (nuclei, crops, cell_features) ------------------------------------


@dataclass
class FieldRun:
    """Parquet parts written by workers and the fields they rejected."""

    parts: list[Path] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    n_fields: int = 0
    n_rows: int = 0

    def rejected_table(self) -> Any:
        import pyarrow as pa

        return pa.Table.from_pylist(self.rejected, schema=rejected_schema())


def run_field_tasks(
    fields: Any,
    illumination: Any,
    task: Callable[..., TaskResult],
    settings: Any,
    *,
    pool: Any,
    parts_dir: Path,
    prefix: str,
    schema: Any,
    centres: Any = None,
    batch_size: int = 16,
    progress: Progress | None = None,
) -> FieldRun:
    """Run `task(batch, plate_illumination, settings, part_path)` over batches of fields.

    fields: relation with FIELD_COLUMNS (the images to process); centres: optional nuclei
    relation, joined per plate so each batch row is one nucleus (fields without nuclei
    have no row: they only count for progress). A batch holds ≤ `batch_size` whole fields
    of one plate. The result always has at least one part (an empty one carrying `schema`
    when no row was produced).
    """
    _require(fields, FIELD_COLUMNS, "images")
    if centres is not None:
        _require(centres, ("plate", *CENTRE_COLUMNS), "nuclei")  # relation or table files
    parts_dir.mkdir(parents=True, exist_ok=True)
    total = count_fields(fields)
    run = FieldRun()
    cache = _PlateCache(illumination, pool)

    def tasks() -> Iterator[tuple[Any, ...]]:
        index = 0
        for table, n_fields in plate_tables(fields, centres):
            n_with_rows = pa_count_distinct(table)
            if progress is not None and n_fields > n_with_rows:
                progress(n_fields - n_with_rows, total=total)  # nothing to do for those
            for batch in field_batches(table.to_batches(), batch_size):
                plate = cache.get(batch["plate"][0].as_py())
                part = str(parts_dir / f"{prefix}-{index:06d}.parquet")
                yield compact(batch), plate, settings, part
                index += 1

    def on_done(result: TaskResult) -> None:
        if result.part:
            run.parts.append(Path(result.part))
        run.rejected.extend(result.rejected)
        run.n_fields += result.n_fields
        run.n_rows += result.n_rows
        if progress is not None:
            progress(result.n_fields, total=total)

    pool.run(task, tasks(), on_done)
    if not run.parts:
        empty = parts_dir / f"{prefix}-empty.parquet"
        run.parts.append(Path(write_empty_part(schema, str(empty))))
    run.parts.sort()
    return run


def pa_count_distinct(table: Any) -> int:
    """Distinct image_id values of an Arrow table."""
    import pyarrow.compute as pc

    return pc.count_distinct(table["image_id"]).as_py() if table.num_rows else 0


# ---- illumination ----------------------------------------------------------------------


@dataclass(frozen=True)
class IlluminationSettings:
    downscale: int = 4
    median_size: int = 15  # in downscaled pixels, at the reference width
    percentiles: tuple[float, float] = (0.1, 99.9)
    sample: int = 8  # fields per plate used for the intensity limits
    reference_width: int = 1280
    quality: QualityLimits = QualityLimits()

    def median_px(self, width: int) -> int:
        scale = width / self.reference_width if self.reference_width > 0 else 1.0
        return max(1, int(round(self.median_size * scale)))


def illumination_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("plate", pa.string()),
            ("channel", pa.string()),
            ("function", pa.binary()),
            ("shape", pa.list_(pa.int32())),
            ("dtype", pa.string()),
            ("downscale", pa.int32()),
            ("median_size", pa.int32()),
            ("image_width", pa.int32()),
            ("image_height", pa.int32()),
            ("n_images", pa.int32()),
            ("n_rejected", pa.int32()),
            ("intensity_low", pa.float64()),
            ("intensity_high", pa.float64()),
        ]
    )


@dataclass
class _PlateSums:
    expected: int
    width: int
    height: int
    done: int = 0
    rejected: int = 0
    sums: dict[str, MeanImage] = field(default_factory=lambda: {c: MeanImage() for c in CHANNELS})
    # (first image_id, {channel: partial sum}) per batch, added in that order when the plate
    # is complete: float sums in completion order would differ between builds in the last bit
    partials: list[tuple[str, dict[str, MeanImage]]] = field(default_factory=list)


def build_illumination(
    images: Any,
    settings: IlluminationSettings,
    *,
    pool: Any,
    batch_size: int = 16,
    progress: Progress | None = None,
) -> Any:
    """Per plate × channel illumination function and intensity limits, as a pyarrow Table.

    Pass 1 sums every field's block-mean-downscaled channels per plate (fields failing the
    quality checks are skipped and counted); a plate's function is finished as soon as its
    last field is summed, so the driver holds sums for the few plates in flight only.
    Pass 2 reads `sample` fields per plate and records the (low, high) percentiles of the
    corrected intensities, which the crops stage maps to 0..255.
    """
    import pyarrow as pa

    _require(images, FIELD_COLUMNS, "images")
    sizes = images.aggregate(
        "plate, count(distinct image_id) as n, max(width) as w, max(height) as h", "plate"
    ).fetchall()
    plates = {plate: _PlateSums(int(n), int(w), int(h)) for plate, n, w, h in sizes}
    total = sum(p.expected for p in plates.values())
    finished: dict[str, dict[str, np.ndarray]] = {}
    counts: dict[str, tuple[int, int]] = {}

    def finish(plate: str) -> None:
        state = plates[plate]
        for _, partial in sorted(state.partials, key=lambda p: p[0]):
            for channel, mean_image in partial.items():
                state.sums[channel].merge(mean_image)
        state.partials = []
        functions = {}
        for channel, mean_image in state.sums.items():
            small_shape = (state.height // settings.downscale, state.width // settings.downscale)
            if mean_image.count == 0:
                functions[channel] = flat_function(small_shape)
            else:
                functions[channel] = illumination_function(
                    mean_image.mean(), settings.median_px(state.width)
                )
        finished[plate] = functions
        counts[plate] = (state.sums["dapi"].count, state.rejected)
        state.sums = {}

    def sum_tasks() -> Iterator[tuple[Any, ...]]:
        for table, _ in plate_tables(images):
            for batch in field_batches(table.to_batches(), batch_size):
                yield compact(batch), settings.downscale, settings.quality

    def on_sums(result: TaskResult) -> None:
        if result.n_fields == 0:
            return
        plate = result.plate
        state = plates[plate]
        state.partials.append(result.extra)
        state.done += result.n_fields
        state.rejected += len(result.rejected)
        if state.done == state.expected:
            finish(plate)
        if progress is not None:
            progress(result.n_fields, total=total + len(plates))

    pool.run(illumination_sums, sum_tasks(), on_sums)
    for plate, state in plates.items():
        if plate not in finished:  # defensive: every field of a plate was summed above
            raise RuntimeError(f"illumination: plate {plate} saw {state.done}/{state.expected}")

    limits: dict[str, dict[str, tuple[float, float]]] = {}

    def limit_tasks() -> Iterator[tuple[Any, ...]]:
        sample = images.select(", ".join(FIELD_COLUMNS)).query(
            "fields",
            "select * from fields qualify row_number() over "
            f"(partition by plate order by hash(image_id), image_id) <= {int(settings.sample)}",
        )
        for table, _ in plate_tables(sample):
            plate = table["plate"][0].as_py()
            yield (
                compact(table),  # one task per plate: its sample of fields
                _plate_functions(plate, finished[plate]),
                settings.percentiles,
                settings.quality,
            )

    def on_limits(result: TaskResult) -> None:
        limits[result.plate] = result.extra
        if progress is not None:
            progress(1, total=total + len(plates))

    pool.run(illumination_limits, limit_tasks(), on_limits)

    rows = []
    for plate in sorted(finished):
        state = plates[plate]
        for channel in CHANNELS:
            function = finished[plate][channel]
            ceiling = 65535.0
            low, high = limits.get(plate, {}).get(channel, (0.0, ceiling))
            n_images, n_rejected = counts[plate]
            rows.append(
                {
                    "plate": plate,
                    "channel": channel,
                    "function": function.astype(np.float32).tobytes(),
                    "shape": list(function.shape),
                    "dtype": "float32",
                    "downscale": settings.downscale,
                    "median_size": settings.median_px(state.width),
                    "image_width": state.width,
                    "image_height": state.height,
                    "n_images": n_images,
                    "n_rejected": n_rejected,
                    "intensity_low": low,
                    "intensity_high": high,
                }
            )
    return pa.Table.from_pylist(rows, schema=illumination_schema())


def _plate_functions(plate: str, functions: dict[str, np.ndarray]) -> PlateIllumination:
    stored = {
        channel: (function.astype(np.float32).tobytes(), function.shape, "float32")
        for channel, function in functions.items()
    }
    return PlateIllumination(plate, stored, {})
