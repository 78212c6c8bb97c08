"""Read a metadata CSV whatever its line endings, quoting or compression."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cellstore.errors import CellstoreError


class MetadataError(CellstoreError):
    """A metadata file that cannot be used at all: unreadable, or missing a required column."""


@dataclass(frozen=True)
class CsvTable:
    """A parsed CSV: its header and its data rows.

    `rows[i]` is data row `i + 1` of the file (the header is row 0); a row keeps the
    fields it has, so a short or long row is visible to the caller.
    """

    path: Path
    header: tuple[str, ...]
    rows: list[list[str]]

    def column_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.header)}


def read_text(path: Path) -> str:
    """The file's text, gunzipped when it ends in `.gz`; a UTF-8 BOM is dropped."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return raw.decode("utf-8-sig")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise MetadataError(f"{path}: cannot read metadata file ({exc})") from exc


def parse_csv_text(text: str) -> list[list[str]]:
    """Split CSV text into rows of fields.

    The csv module treats `\\r\\n`, `\\r` and `\\n` alike as record ends (when the text is
    not pre-split into lines), so CRLF, old-Mac CR-only and LF files parse the same, and
    quoted fields may hold commas. Blank lines are skipped.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        return [row for row in reader if row and any(field.strip() for field in row)]
    except csv.Error as exc:
        raise MetadataError(f"malformed CSV near record {reader.line_num}: {exc}") from exc


def read_csv(path: Path, required: Sequence[str]) -> CsvTable:
    """Read `path` and check that its header holds every `required` column.

    Raises MetadataError naming the file (and the missing column) when it is unreadable,
    empty, or lacks a required column.
    """
    text = read_text(path)
    try:
        records = parse_csv_text(text)
    except MetadataError as exc:
        raise MetadataError(f"{path}: {exc}") from exc
    if not records:
        raise MetadataError(f"{path}: empty metadata file (expected a header row)")
    header = tuple(name.strip() for name in records[0])
    missing = [name for name in required if name not in header]
    if missing:
        raise MetadataError(
            f"{path}: missing required column {missing[0]!r}"
            + (f" (and {len(missing) - 1} more: {', '.join(missing[1:])})" if missing[1:] else "")
            + f"; found columns: {', '.join(header)}"
        )
    return CsvTable(path=path, header=header, rows=records[1:])
