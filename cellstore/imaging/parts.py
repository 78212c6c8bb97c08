"""What a worker task hands back: a Parquet part on disk and a small summary for the driver."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cellstore.imaging.fieldio import FieldRejected
from cellstore.imaging.fields import Field


@dataclass
class TaskResult:
    """What a task sends back to the driver: small, whatever the batch size."""

    part: str | None
    n_fields: int
    n_rows: int
    rejected: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    plate: str = ""
    extra: Any = None


def rejected_row(item: Field, error: FieldRejected) -> dict[str, str]:
    return {
        "image_id": item.image_id,
        "plate": item.plate,
        "well": item.well,
        "reason": error.reason,
        "detail": error.detail,
    }


def rejected_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("image_id", pa.string()),
            ("plate", pa.string()),
            ("well", pa.string()),
            ("reason", pa.string()),
            ("detail", pa.string()),
        ]
    )


ROW_GROUP_BYTES = 32 * 2**20  # crops are ~28 KB a row: row groups of ~1,200 crops


def write_part(tables: list[Any], schema: Any, path: str) -> str | None:
    """Write the non-empty tables as one Parquet file (zstd, row groups of ~32 MB
    uncompressed); None when there is no row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [t for t in tables if t.num_rows]
    if not tables:
        return None
    table = pa.concat_tables(tables).cast(schema)
    rows = max(64, min(65536, ROW_GROUP_BYTES * table.num_rows // max(table.nbytes, 1)))
    pq.write_table(table, path, compression="zstd", compression_level=1, row_group_size=rows)
    return path


def write_empty_part(schema: Any, path: str) -> str:
    """A zero-row Parquet file carrying the schema (so an empty result still has columns)."""
    import pyarrow.parquet as pq

    pq.write_table(schema.empty_table(), path)
    return path
