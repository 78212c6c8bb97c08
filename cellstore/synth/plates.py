"""Write a synthetic source in the real BBBC021 layout, driven by the real metadata."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from importlib import resources
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from cellstore.sources.bbbc021 import (
    IMAGE_COLUMNS,
    IMAGE_CSV,
    MOA_CSV,
    metadata_path,
    parse_image_row,
    read_moa,
)
from cellstore.sources.csvfile import read_csv
from cellstore.synth.cells import FieldCells, expected_cell_count, sample_field
from cellstore.synth.params import GENERATOR_VERSION, SUMMARY_FILE, SynthParams
from cellstore.synth.phenotypes import (
    AXES,
    AXIS_INDEX,
    DMSO,
    CompoundModel,
    PlateEffects,
    WeekEffects,
    compound_models,
    plate_effects,
    rng_for,
    week_effects,
    well_gain,
    well_offset,
)
from cellstore.synth.render import Imaging, field_shape, render_field

GROUND_TRUTH_DIR = "ground_truth"
CHANNEL_COLUMNS = ("DAPI", "Tubulin", "Actin")


def shipped_metadata() -> Path:
    """The folder holding the real BBBC021 metadata shipped with cellstore."""
    return Path(str(resources.files("cellstore") / "data" / "bbbc021"))


@dataclass(frozen=True)
class Field:
    """One selected image.csv row: what to draw and where to write it."""

    raw: tuple[str, ...]  # the row's original fields
    plate: str
    well: str
    site: int
    batch: str
    compound: str
    concentration: float
    files: tuple[str, str, str]  # relative paths of the DAPI, tubulin and actin files

    @property
    def image_id(self) -> str:
        return f"{self.plate}_{self.well}_s{self.site}"


def generate(
    out_dir: Path | str,
    *,
    plates: Sequence[str] | None = None,
    sites: int | None = None,
    scale: float = 1.0,
    seed: int = 0,
    wells: str = "all",
    density: float = 1.0,
    batch_strength: float = 1.0,
    heterogeneity: float = 1.0,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write a synthetic BBBC021 source into `out_dir` and return its summary.

    Layout (as the real data): `BBBC021_v1_image.csv` (the selected rows of the real file,
    CRLF), `BBBC021_v1_moa.csv` (the real file, CR-only), `WeekN/WeekN_PLATE/<file>.tif`
    (uncompressed 16-bit, 1280×1024 × scale, the real file names). Beside it:
    `ground_truth/nuclei.parquet` (one row per nucleus: image_id, x = column, y = row in
    pixels of the written image, pixel centres at integers as in scikit-image; radius,
    touches_border, is_mitotic, ...), `ground_truth/wells.parquet` (the phenotype model's
    parameters per well) and `cellstore_synth.json` (this summary). Same parameters and
    seed → the same pixels; a plate's images do not depend on which other plates are made.

    batch_strength, heterogeneity: multiply the Week effects in phenotype space and the
    within-MoA spread of compounds (1: the values calibrated against the real screen).
    progress: called with (fields done, fields total) after each plate.
    """
    params = SynthParams(
        plates=tuple(plates) if plates else None,
        sites=sites,
        scale=float(scale),
        seed=int(seed),
        wells=wells,
        density=float(density),
        batch_strength=float(batch_strength),
        heterogeneity=float(heterogeneity),
    )
    _validate(params)
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = shipped_metadata()
    layout = plan(params, out)
    fields, models, annotations, header = (
        layout.fields,
        layout.models,
        layout.annotations,
        layout.header,
    )

    by_plate: dict[str, list[Field]] = {}
    for field in fields:
        by_plate.setdefault(field.plate, []).append(field)
    jobs = [(out, params, plate_fields, models) for plate_fields in by_plate.values()]
    nuclei_parts: list[dict[str, np.ndarray]] = []
    done = 0
    if workers > 1 and len(jobs) > 1:
        context = get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for part, job in zip(pool.map(_render_plate, jobs), jobs, strict=True):
                nuclei_parts.append(part)
                done += len(job[2])
                if progress:
                    progress(done, len(fields))
    else:
        for job in jobs:
            nuclei_parts.append(_render_plate(job))
            done += len(job[2])
            if progress:
                progress(done, len(fields))

    _write_image_csv(out / IMAGE_CSV, header, fields)
    (out / MOA_CSV).write_bytes(metadata_path(source, MOA_CSV).read_bytes())
    ground_truth = out / GROUND_TRUTH_DIR
    ground_truth.mkdir(exist_ok=True)
    n_nuclei = _write_nuclei(ground_truth / "nuclei.parquet", nuclei_parts)
    n_wells = _write_wells(ground_truth / "wells.parquet", fields, params, models, annotations)
    height, width = field_shape(params.scale)
    summary = {
        "generator_version": GENERATOR_VERSION,
        "fingerprint": params.fingerprint(),
        "params": asdict(params),
        "n_plates": len(by_plate),
        "n_wells": n_wells,
        "n_fields": len(fields),
        "n_images": 3 * len(fields),
        "n_nuclei": n_nuclei,
        "image_height": height,
        "image_width": width,
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


@dataclass(frozen=True)
class Layout:
    """What a generation draws: the selected fields and every compound's model."""

    fields: list[Field]
    models: dict[str, CompoundModel]
    annotations: dict[tuple[str, float], str]
    header: tuple[str, ...]


def plan(params: SynthParams, out: Path | None = None) -> Layout:
    """The fields `params` selects from the shipped metadata, and the compound models."""
    _validate(params)
    source = shipped_metadata()
    all_fields, header = _read_fields(source, out if out is not None else Path("."))
    annotations = {(r["compound"], r["concentration"]): r["moa"] for r in read_moa(source)}
    fields = _select(all_fields, params, annotations)
    concentrations: dict[str, set[float]] = {}
    for field in all_fields:
        concentrations.setdefault(field.compound, set()).add(field.concentration)
    models = compound_models(annotations, concentrations, params.heterogeneity)
    return Layout(fields, models, annotations, header)


def well_phenotype(
    params: SynthParams,
    field: Field,
    model: CompoundModel,
    week: WeekEffects,
    plate_fx: PlateEffects,
) -> tuple[np.ndarray, np.ndarray, float]:
    """(base z, Δ as expressed in the field's Week, effect) of a field's well."""
    base = week.offset + plate_fx.offset + well_offset(params.seed, field.plate, field.well)
    return base, week.response(model.delta, model.moa), model.effect(field.concentration)


def _validate(params: SynthParams) -> None:
    if params.wells not in ("all", "annotated"):
        raise ValueError(f"wells must be 'all' or 'annotated', not {params.wells!r}")
    if not 0 < params.scale <= 4:
        raise ValueError(f"scale must be in (0, 4], not {params.scale}")
    if params.sites is not None and params.sites < 1:
        raise ValueError(f"sites must be at least 1, not {params.sites}")
    if params.density <= 0:
        raise ValueError(f"density must be positive, not {params.density}")
    if params.batch_strength < 0:
        raise ValueError(f"batch_strength must be at least 0, not {params.batch_strength}")
    if params.heterogeneity < 0:
        raise ValueError(f"heterogeneity must be at least 0, not {params.heterogeneity}")


def _read_fields(source: Path, out: Path) -> tuple[list[Field], tuple[str, ...]]:
    """Every row of the shipped image.csv as a Field (the shipped file has no bad rows)."""
    table = read_csv(metadata_path(source, IMAGE_CSV), IMAGE_COLUMNS)
    fields = []
    for i, raw in enumerate(table.rows, start=1):
        row = parse_image_row(table, i, raw, out)
        if not row.ok:
            raise ValueError(f"shipped metadata row {i}: {'; '.join(row.problems)}")
        cell = dict(zip(table.header, raw, strict=True))
        files = tuple(
            f"{cell[f'Image_PathName_{stem}']}/{cell[f'Image_FileName_{stem}']}"
            for stem in CHANNEL_COLUMNS
        )
        v = row.values
        fields.append(
            Field(
                tuple(raw),
                v["plate"],
                v["well"],
                v["site"],
                v["batch"],
                v["compound"],
                v["concentration"],
                files,
            )  # type: ignore[arg-type]
        )
    return fields, table.header


def _select(
    fields: list[Field], params: SynthParams, annotations: dict[tuple[str, float], str]
) -> list[Field]:
    if params.plates is not None:
        known = {field.plate for field in fields}
        unknown = sorted(set(params.plates) - known)
        if unknown:
            raise ValueError(f"unknown plate(s) {', '.join(unknown)}; plates look like Week4_27481")
    chosen = [
        field
        for field in fields
        if (params.plates is None or field.plate in params.plates)
        and (params.sites is None or field.site <= params.sites)
        and (params.wells == "all" or (field.compound, field.concentration) in annotations)
    ]
    if not chosen:
        raise ValueError("the selection holds no field of view")
    return chosen


def _render_plate(
    job: tuple[Path, SynthParams, list[Field], dict[str, CompoundModel]],
) -> dict[str, np.ndarray]:
    """Render and write every field of one plate; return its nuclei ground truth columns."""
    import tifffile

    out, params, fields, models = job
    plate, batch = fields[0].plate, fields[0].batch
    week = week_effects(params.seed, batch, params.batch_strength)
    plate_fx = plate_effects(params.seed, plate)
    imaging = Imaging(
        gain=week.gain * plate_fx.gain,
        background=week.background,
        vignetting=week.vignetting,
        centre=week.centre,
        tilt=week.tilt,
    )
    folders: set[Path] = set()
    columns: dict[str, list[np.ndarray]] = {}
    for field in fields:
        base, delta, effect = well_phenotype(params, field, models[field.compound], week, plate_fx)
        rng = rng_for(params.seed, "field", field.plate, field.well, field.site)
        cells = sample_field(rng, base, delta, effect, params.density)
        stained = replace(imaging, gain=well_gain(params.seed, week, plate_fx, plate, field.well))
        images = render_field(cells, params.scale, stained, rng)
        for image, relative in zip(images, field.files, strict=True):
            path = out / relative
            if path.parent not in folders:
                path.parent.mkdir(parents=True, exist_ok=True)
                folders.add(path.parent)
            tifffile.imwrite(path, image, photometric="minisblack", metadata=None)
        for name, values in _nuclei_rows(field, cells, params.scale, images.shape[1:]).items():
            columns.setdefault(name, []).append(values)
    return {name: np.concatenate(parts) for name, parts in columns.items()}


def _nuclei_rows(
    field: Field, cells: FieldCells, scale: float, shape: tuple[int, int]
) -> dict[str, np.ndarray]:
    """Ground-truth columns for one field's nuclei, in pixels of the written image."""
    m = cells.n_nuclei
    x, y = cells.nucleus_x * scale, cells.nucleus_y * scale
    extent = cells.nucleus_a * scale
    height, width = shape
    owner = cells.nucleus_cell
    return {
        "plate": np.full(m, field.plate, dtype=object),
        "well": np.full(m, field.well, dtype=object),
        "site": np.full(m, field.site, dtype=np.int32),
        "image_id": np.full(m, field.image_id, dtype=object),
        "nucleus_id": np.arange(m, dtype=np.int32),
        "cell_id": owner.astype(np.int32),
        "x": x,
        "y": y,
        "radius": np.sqrt(cells.nucleus_a * cells.nucleus_b) * scale,
        "touches_border": (x - extent < 0)
        | (y - extent < 0)
        | (x + extent > width - 1)
        | (y + extent > height - 1),
        "is_mitotic": cells.is_mitotic[owner],
        "is_binucleate": cells.is_binucleate[owner],
        "response": cells.response[owner],
    }


def _write_image_csv(path: Path, header: tuple[str, ...], fields: list[Field]) -> None:
    """The selected rows as the real file writes them: CRLF, no newline after the last row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(field.raw for field in fields)
    path.write_bytes(buffer.getvalue().removesuffix("\r\n").encode())


def _write_nuclei(path: Path, parts: list[dict[str, np.ndarray]]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = [part for part in parts if part]
    if not parts:
        return 0
    columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    pq.write_table(pa.table(columns), path)
    return len(columns["x"])


def _write_wells(
    path: Path,
    fields: list[Field],
    params: SynthParams,
    models: dict[str, CompoundModel],
    annotations: dict[tuple[str, float], str],
) -> int:
    """One row per generated well: its treatment, the model's MoA and effect, the well's
    mean phenotype z (one `z_<axis>` column per axis), and its imaging effects (the gain
    includes the well's staining)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    seen: set[tuple[str, str]] = set()
    sites: dict[tuple[str, str], int] = {}
    for field in fields:
        sites[(field.plate, field.well)] = sites.get((field.plate, field.well), 0) + 1
    for field in fields:
        key = (field.plate, field.well)
        if key in seen:
            continue
        seen.add(key)
        model = models[field.compound]
        week = week_effects(params.seed, field.batch, params.batch_strength)
        plate_fx = plate_effects(params.seed, field.plate)
        base, delta, effect = well_phenotype(params, field, model, week, plate_fx)
        z = base + effect * delta
        gain = well_gain(params.seed, week, plate_fx, field.plate, field.well)
        row = {
            "plate": field.plate,
            "well": field.well,
            "batch": field.batch,
            "compound": field.compound,
            "concentration": field.concentration,
            "moa": model.moa,
            "is_annotated": (field.compound, field.concentration) in annotations,
            "ec50": model.ec50 if model.moa != DMSO else None,
            "effect": effect,
            "expected_cells": expected_cell_count(z[AXIS_INDEX["density"]]) * params.density,
            "n_sites": sites[key],
        }
        row |= {f"z_{axis}": float(z[i]) for i, axis in enumerate(AXES)}
        row |= {f"gain_{c.lower()}": float(gain[i]) for i, c in enumerate(CHANNEL_COLUMNS)}
        row |= {
            f"background_{c.lower()}": float(week.background[i])
            for i, c in enumerate(CHANNEL_COLUMNS)
        }
        row["vignetting"] = week.vignetting
        rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return len(rows)
