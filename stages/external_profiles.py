"""Well-level feature tables computed elsewhere, with BBBC021 treatment metadata attached."""

from __future__ import annotations

import hashlib
import importlib.resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from cellstore.stage import StageContext, stage

if TYPE_CHECKING:
    from cellstore.profiling.external import WellFeatureTable

PACKAGE_PREFIX = "package:"
LJOSA_2013 = (
    "cellprofiler_ljosa2013=package:data/bbbc021/ljosa_jbiomolscreen_2013_per_well_mean.csv.gz"
)
BBBC021_IMAGE_METADATA = "package:data/bbbc021/BBBC021_v1_image.csv.gz"

PROFILE_SCHEMA = pa.schema(
    [
        ("feature_source", pa.string()),
        ("plate", pa.string()),
        ("well", pa.string()),
        ("batch", pa.string()),
        ("compound", pa.string()),
        ("concentration", pa.float64()),
        ("feature_index", pa.int32()),
        ("feature", pa.string()),
        ("value", pa.float64()),
    ]
)
REJECTED_SCHEMA = pa.schema(
    [
        ("feature_source", pa.string()),
        ("file", pa.string()),
        ("source_row", pa.int64()),
        ("plate", pa.string()),
        ("well", pa.string()),
        ("reason", pa.string()),
    ]
)


def resolve_path(text: str, project_dir: Path | None) -> Path:
    """`package:<rel>` lies inside the cellstore package; a relative path in the project."""
    if text.startswith(PACKAGE_PREFIX):
        return Path(
            str(importlib.resources.files("cellstore").joinpath(text[len(PACKAGE_PREFIX) :]))
        )
    path = Path(text).expanduser()
    return path if path.is_absolute() or project_dir is None else project_dir / path


def parse_profile_files(entries: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """`name=path` entries → [(feature_source, path)]; names must be unique."""
    parsed: list[tuple[str, str]] = []
    for entry in entries:
        name, sep, path = entry.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise ValueError(
                f"external_profiles: profile_files entry {entry!r} is not 'feature_source=path'"
            )
        if name in {n for n, _ in parsed}:
            raise ValueError(f"external_profiles: feature source {name!r} is listed twice")
        parsed.append((name, path))
    return parsed


def _project_dir(ctx: StageContext | None) -> Path | None:
    return getattr(getattr(ctx, "config", None), "project_dir", None)


def _watch_files(settings: dict[str, Any], ctx: StageContext) -> str:
    """Digest of the input files' size and mtime, so an edited file triggers a rebuild."""
    digest = hashlib.sha256()
    paths = [p for _, p in parse_profile_files(settings["profile_files"])]
    for text in [*paths, settings["image_metadata"]]:
        path = resolve_path(text, _project_dir(ctx))
        stat = path.stat() if path.is_file() else None
        digest.update(f"{path}:{stat and stat.st_size}:{stat and stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def well_treatments(path: Path) -> dict[tuple[str, str], tuple[str, float, str] | str]:
    """(plate, well) → (compound, concentration, batch) from a BBBC021 image.csv.

    A well whose fields disagree on the treatment, or with an unparsable field, maps to
    the reason instead, so the rows that need it can be rejected with that reason.
    """
    from cellstore.sources.bbbc021 import IMAGE_COLUMNS, batch_of
    from cellstore.sources.csvfile import read_csv
    from cellstore.sources.values import parse_concentration, parse_text

    table = read_csv(path, IMAGE_COLUMNS)
    col = table.column_index()
    found: dict[tuple[str, str], tuple[str, float, str] | str] = {}
    for number, row in enumerate(table.rows, start=1):
        try:
            plate = parse_text(row[col["Image_Metadata_Plate_DAPI"]])
            well = parse_text(row[col["Image_Metadata_Well_DAPI"]]).upper()
        except (ValueError, IndexError):
            continue  # a field row without a key cannot describe any well
        try:
            value: tuple[str, float, str] | str = (
                parse_text(row[col["Image_Metadata_Compound"]]),
                parse_concentration(row[col["Image_Metadata_Concentration"]]),
                batch_of(plate, row[col["Image_PathName_DAPI"]].strip().replace("\\", "/")),
            )
        except (ValueError, IndexError) as exc:
            value = f"{path.name} row {number}: {exc}"
        previous = found.get((plate, well))
        if isinstance(previous, str):
            continue  # the well is already unusable; keep its first reason
        if previous is not None and not isinstance(value, str) and previous != value:
            value = f"{path.name} row {number}: fields of {plate} {well} disagree on treatment"
        found[(plate, well)] = value
    return found


@stage(outputs=["external_profiles", "external_profiles_rejected"], watch=_watch_files)
def external_profiles(
    ctx: StageContext,
    *,
    profile_files: tuple[str, ...] = (LJOSA_2013,),
    image_metadata: str = BBBC021_IMAGE_METADATA,
) -> dict[str, pa.Table]:
    """Imported well profiles in long form. Grain: (feature_source, plate, well, feature).

    profile_files: `feature_source=path` entries; CSV, CSV.gz or Parquet with plate and
    well columns (CellProfiler or pycytominer names) and one numeric column per feature.
    `package:` paths lie inside the cellstore package (the default is the shipped Ljosa
    et al. 2013 CellProfiler per-well means). image_metadata: a BBBC021 image.csv giving
    each well's compound, concentration and batch (Week), whatever the image source.
    Rows that cannot be used go to `external_profiles_rejected` with the reason.
    """
    from cellstore.profiling.external import read_well_features, row_problems

    project_dir = _project_dir(ctx)
    treatments = well_treatments(resolve_path(image_metadata, project_dir))
    accepted: list[pa.Table] = []
    rejected: list[dict[str, Any]] = []
    for feature_source, text in parse_profile_files(profile_files):
        path = resolve_path(text, project_dir)
        table = read_well_features(path)
        keep: list[int] = []
        metadata: list[tuple[str, float, str]] = []
        for i, problem in enumerate(row_problems(table)):
            key = (table.plates[i], table.wells[i])
            treatment = treatments.get(key)
            if problem is None and treatment is None:
                problem = f"plate {key[0]} well {key[1]} is not in {Path(image_metadata).name}"
            elif problem is None and isinstance(treatment, str):
                problem = treatment
            if problem is not None:
                rejected.append(
                    {
                        "feature_source": feature_source,
                        "file": str(path),
                        "source_row": i + 1,
                        "plate": key[0],
                        "well": key[1],
                        "reason": problem,
                    }
                )
                continue
            keep.append(i)
            metadata.append(treatment)  # type: ignore[arg-type]
        accepted.append(_long_table(feature_source, table, keep, metadata))
    return {
        "external_profiles": pa.concat_tables(accepted)
        if accepted
        else PROFILE_SCHEMA.empty_table(),
        "external_profiles_rejected": pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA),
    }


def _long_table(
    feature_source: str,
    table: WellFeatureTable,
    keep: list[int],
    metadata: list[tuple[str, float, str]],
) -> pa.Table:
    """One row per (kept well, feature), features in file column order."""
    n_features = len(table.feature_names)
    rows = np.asarray(keep, dtype=np.int64)

    def per_well(values: list[Any], kind: pa.DataType) -> pa.Array:
        return pa.array(np.repeat(np.asarray(values, dtype=object), n_features), type=kind)

    return pa.table(
        {
            "feature_source": pa.array([feature_source] * (len(rows) * n_features), pa.string()),
            "plate": per_well([table.plates[i] for i in keep], pa.string()),
            "well": per_well([table.wells[i] for i in keep], pa.string()),
            "batch": per_well([m[2] for m in metadata], pa.string()),
            "compound": per_well([m[0] for m in metadata], pa.string()),
            "concentration": per_well([m[1] for m in metadata], pa.float64()),
            "feature_index": pa.array(
                np.tile(np.arange(1, n_features + 1, dtype=np.int32), len(rows))
            ),
            "feature": pa.array(table.feature_names * len(rows), pa.string()),
            "value": pa.array(table.values[rows].reshape(-1) if len(rows) else [], pa.float64()),
        },
        schema=PROFILE_SCHEMA,
    )
