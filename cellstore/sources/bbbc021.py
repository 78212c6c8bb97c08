"""The BBBC021 source layout: metadata file names, columns, and row parsing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellstore.sources.csvfile import CsvTable, MetadataError, read_csv
from cellstore.sources.values import parse_concentration, parse_int, parse_text

IMAGE_CSV = "BBBC021_v1_image.csv"
MOA_CSV = "BBBC021_v1_moa.csv"

# (channel key used in column names like path_dapi, metadata column stem, file suffix _w<n>)
CHANNELS: tuple[tuple[str, str, int], ...] = (
    ("dapi", "DAPI", 1),
    ("tubulin", "Tubulin", 2),
    ("actin", "Actin", 4),
)

IMAGE_COLUMNS = (
    "TableNumber",
    "ImageNumber",
    "Image_FileName_DAPI",
    "Image_PathName_DAPI",
    "Image_FileName_Tubulin",
    "Image_PathName_Tubulin",
    "Image_FileName_Actin",
    "Image_PathName_Actin",
    "Image_Metadata_Plate_DAPI",
    "Image_Metadata_Well_DAPI",
    "Replicate",
    "Image_Metadata_Compound",
    "Image_Metadata_Concentration",
)
MOA_COLUMNS = ("compound", "concentration", "moa")

# `G10_s1_w1BEDC2073-A983-4B98-95E9-84466707A25D.tif`: well, site, wavelength, then a UUID;
# most plates prefix it with the plate's own name (`Week6_200607_F10_s1_w1...`).
FILE_NAME = re.compile(r"(?:^|_)(?P<well>[A-Za-z]{1,2}\d{1,2})_s(?P<site>\d+)_w(?P<wave>\d)")
WELL_NAME = re.compile(r"^[A-Za-z]{1,2}\d{1,2}$")
WEEK_PLATE = re.compile(r"^(?P<week>Week\d+)_")


def metadata_path(source: Path, name: str) -> Path:
    """`source/name`, or its gzipped copy `source/name.gz`; an error naming both if neither."""
    for candidate in (source / name, source / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise MetadataError(f"{source}: no {name} (or {name}.gz) in the source folder")


def batch_of(plate: str, path_name: str) -> str:
    """The plate's batch: its `WeekN` prefix (`Week4_27481` → `Week4`).

    Plates named otherwise take the first folder of their path (`Week4/Week4_27481`).
    """
    match = WEEK_PLATE.match(plate)
    if match:
        return match.group("week")
    parts = [part for part in path_name.split("/") if part]
    if len(parts) >= 2:
        return parts[0]
    raise ValueError(f"cannot tell the batch of plate {plate!r} (path {path_name!r})")


@dataclass
class FieldRow:
    """One image.csv row, parsed as far as it goes.

    `values` holds the identifying columns that parsed (image table names: plate, well, ...);
    `problems` lists what did not. A row with no problem has every value set.
    """

    source_row: int
    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_image_rows(source: Path) -> tuple[Path, list[FieldRow]]:
    """Parse every data row of the source's image.csv (one FieldRow per row, none dropped)."""
    path = metadata_path(source, IMAGE_CSV)
    table = read_csv(path, IMAGE_COLUMNS)
    root = source.resolve()
    return path, [parse_image_row(table, i + 1, row, root) for i, row in enumerate(table.rows)]


def parse_image_row(table: CsvTable, source_row: int, row: list[str], root: Path) -> FieldRow:
    """Parse one data row; `root` anchors the relative Image_PathName_* folders."""
    result = FieldRow(source_row=source_row)
    if len(row) != len(table.header):
        result.problems.append(f"has {len(row)} fields, the header has {len(table.header)}")
        row = (row + [""] * len(table.header))[: len(table.header)]
    cell = dict(zip(table.header, row, strict=True))

    def take(name: str, column: str, parse: Any) -> Any:
        try:
            value = parse(cell[column])
        except ValueError as exc:
            result.problems.append(f"{column}: {exc}")
            return None
        result.values[name] = value
        return value

    take("table_number", "TableNumber", parse_int)
    take("image_number", "ImageNumber", parse_int)
    plate = take("plate", "Image_Metadata_Plate_DAPI", parse_text)
    well = take("well", "Image_Metadata_Well_DAPI", _parse_well)
    take("replicate", "Replicate", parse_int)
    take("compound", "Image_Metadata_Compound", parse_text)
    take("concentration", "Image_Metadata_Concentration", parse_concentration)

    sites: set[int] = set()
    for key, stem, wave in CHANNELS:
        file_name = cell[f"Image_FileName_{stem}"].strip()
        path_name = cell[f"Image_PathName_{stem}"].strip().replace("\\", "/")
        if not file_name:
            result.problems.append(f"Image_FileName_{stem}: empty value")
            continue
        result.values[f"path_{key}"] = str(root / path_name / file_name)
        match = FILE_NAME.search(file_name)
        if match is None:
            result.problems.append(
                f"Image_FileName_{stem}: {file_name!r} is not named "
                "[<prefix>_]<well>_s<site>_w<n>..."
            )
            continue
        if int(match.group("wave")) != wave:
            result.problems.append(
                f"Image_FileName_{stem}: {file_name!r} should be wavelength _w{wave}"
            )
        if well is not None and match.group("well").upper() != well:
            result.problems.append(f"Image_FileName_{stem}: {file_name!r} is not from well {well}")
        sites.add(int(match.group("site")))
        if key == "dapi" and plate is not None:
            try:
                result.values["batch"] = batch_of(plate, path_name)
            except ValueError as exc:
                result.problems.append(f"Image_PathName_{stem}: {exc}")
    if len(sites) > 1:
        result.problems.append(f"channel files disagree on the site: {sorted(sites)}")
    elif sites:
        result.values["site"] = sites.pop()
    if all(result.values.get(name) is not None for name in ("plate", "well", "site")):
        values = result.values
        values["image_id"] = f"{values['plate']}_{values['well']}_s{values['site']}"
    return result


def _parse_well(text: str) -> str:
    well = parse_text(text).upper()
    if not WELL_NAME.match(well):
        raise ValueError(f"{text!r} is not a well name like G10")
    return well


def read_moa(source: Path) -> list[dict[str, Any]]:
    """The source's moa.csv as records {compound, concentration, moa}.

    The annotation is small and everything downstream depends on it, so a bad row or a
    duplicated (compound, concentration) is an error naming the file and row.
    """
    path = metadata_path(source, MOA_CSV)
    table = read_csv(path, MOA_COLUMNS)
    index = table.column_index()
    records: list[dict[str, Any]] = []
    seen: dict[tuple[str, float], int] = {}
    for i, row in enumerate(table.rows, start=1):
        if len(row) != len(table.header):
            raise MetadataError(
                f"{path}: row {i} has {len(row)} fields, the header has {len(table.header)}"
            )
        try:
            record = {
                "compound": parse_text(row[index["compound"]]),
                "concentration": parse_concentration(row[index["concentration"]]),
                "moa": parse_text(row[index["moa"]]),
            }
        except ValueError as exc:
            raise MetadataError(f"{path}: row {i}: {exc}") from exc
        key = (record["compound"], record["concentration"])
        if key in seen:
            raise MetadataError(
                f"{path}: row {i}: treatment {key[0]} at {key[1]} already annotated on row "
                f"{seen[key]}"
            )
        seen[key] = i
        records.append(record)
    return records
