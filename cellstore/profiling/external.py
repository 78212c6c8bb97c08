"""Read well-level feature tables computed elsewhere (CellProfiler-style CSV or Parquet)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PLATE_COLUMNS = ("Image_Metadata_Plate", "Metadata_Plate", "Metadata_plate", "plate")
WELL_COLUMNS = ("Image_Metadata_Well", "Metadata_Well", "Metadata_well", "well")


class FeatureTableError(ValueError):
    """A feature table that cannot be used at all: unreadable, or columns missing or wrong."""


@dataclass(frozen=True)
class WellFeatureTable:
    """One file's rows: keys per row, and the feature matrix in file column order."""

    path: Path
    plates: list[str]
    wells: list[str]
    feature_names: list[str]
    values: np.ndarray  # (n_rows, n_features) float64; NaN where the file has no value

    @property
    def source_rows(self) -> range:
        """1-based data row numbers (the header is row 0)."""
        return range(1, len(self.plates) + 1)


def _read_frame(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
        if name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(path, dtype_backend="numpy_nullable")
    except (OSError, ValueError, EOFError) as exc:
        raise FeatureTableError(f"{path}: cannot read feature table ({exc})") from exc
    raise FeatureTableError(f"{path}: expected a .csv, .csv.gz or .parquet feature table")


def _find_column(
    path: Path, columns: Sequence[str], wanted: str | None, kind: str, candidates: Sequence[str]
) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise FeatureTableError(f"{path}: no {kind} column {wanted!r}")
        return wanted
    for name in candidates:
        if name in columns:
            return name
    raise FeatureTableError(f"{path}: no {kind} column (looked for {', '.join(candidates)})")


def is_metadata_column(name: str) -> bool:
    """Metadata columns in CellProfiler / pycytominer naming (not features)."""
    return "Metadata" in name


def read_well_features(
    path: Path, *, plate_column: str | None = None, well_column: str | None = None
) -> WellFeatureTable:
    """Read a table with one row per well: plate and well columns, then numeric features.

    Every column that is neither plate, well nor metadata (`*Metadata*`) is a feature and
    must be numeric; a missing value stays NaN for the caller to reject the row.
    """
    frame = _read_frame(path)
    columns = [str(c) for c in frame.columns]
    plate = _find_column(path, columns, plate_column, "plate", PLATE_COLUMNS)
    well = _find_column(path, columns, well_column, "well", WELL_COLUMNS)
    features = [c for c in columns if c not in (plate, well) and not is_metadata_column(c)]
    if not features:
        raise FeatureTableError(f"{path}: no feature columns besides plate and well")
    for name in features:
        if not pd.api.types.is_numeric_dtype(frame[name]) or pd.api.types.is_bool_dtype(
            frame[name]
        ):
            raise FeatureTableError(
                f"{path}: feature column {name!r} is not numeric (dtype {frame[name].dtype})"
            )
    values = frame[features].astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
    return WellFeatureTable(
        path=path,
        plates=[_key_text(v) for v in frame[plate]],
        wells=[_key_text(v).upper() for v in frame[well]],
        feature_names=features,
        values=values,
    )


def _key_text(value: object) -> str:
    """A plate or well key as stripped text; missing keys become ''."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def row_problems(table: WellFeatureTable) -> list[str | None]:
    """Why each row cannot be used (None when it can): empty key, missing or infinite
    value, or a (plate, well) already seen on an earlier row of the same file."""
    problems: list[str | None] = []
    first_row: dict[tuple[str, str], int] = {}
    finite = np.isfinite(table.values)
    for i, (plate, well) in enumerate(zip(table.plates, table.wells, strict=True)):
        row = i + 1
        if not plate or not well:
            problems.append("empty plate or well")
        elif not finite[i].all():
            bad = table.feature_names[int(np.argmin(finite[i]))]
            n_bad = int((~finite[i]).sum())
            problems.append(f"missing or infinite value in {n_bad} feature(s), first {bad!r}")
        elif (plate, well) in first_row:
            problems.append(f"duplicate of row {first_row[(plate, well)]} ({plate} {well})")
        else:
            first_row[(plate, well)] = row
            problems.append(None)
    return problems
