"""cellstore: a feature store for single-cell profiling."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def connect(warehouse: str | Path = "warehouse", *, snapshot: int | None = None) -> Any:
    """A read-only DuckDB connection to a built warehouse; tables by plain name.

    `cellstore.connect("warehouse").sql("select * from moa_accuracy").pl()` (or `.df()`,
    `.arrow()`); `snapshot` opens the warehouse as of that snapshot id.
    """
    from cellstore.engine.warehouse import Warehouse  # duckdb loads only when asked

    return Warehouse(Path(warehouse)).connect(read_only=True, snapshot=snapshot)
