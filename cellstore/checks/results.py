"""Check results: the `CheckResult` record, its one-line message, and the results table."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

RESULTS_SCHEMA = "cellstore_meta"
RESULTS_TABLE = f"{RESULTS_SCHEMA}.check_results"
SAMPLE_ROWS = 5  # offending rows kept per failing check
_MAX_TEXT = 120  # characters kept of one long value in a sample
_MAX_MESSAGE_SAMPLE = 300  # characters of the sample quoted in a message


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check on one table."""

    table: str
    check: str  # readable name, e.g. "not_null(image_id)"
    severity: str  # "error" blocks the commit, "warn" is recorded only
    passed: bool
    n_failing: int  # offending rows (or keys, or 1 for a table-level condition)
    sample: str  # JSON list of a few offending rows; "" when passed
    message: str  # one line naming the table, the check and offending rows

    @property
    def blocking(self) -> bool:
        """A failed error-severity check: the commit must not happen."""
        return not self.passed and self.severity == "error"


def passed_result(table: str, check: str, severity: str) -> CheckResult:
    return CheckResult(table, check, severity, True, 0, "", f"{table}: {check} passed")


def skipped_result(table: str, check: str, severity: str, why: str) -> CheckResult:
    """A check that could not run for a reason outside the table (not a failure)."""
    return CheckResult(table, check, severity, True, 0, "", f"{table}: {check} skipped: {why}")


def failed_result(
    table: str,
    check: str,
    severity: str,
    n_failing: int,
    what: str,
    sample_rows: list[dict[str, Any]] | None = None,
) -> CheckResult:
    """A failing result; `what` says what is wrong, e.g. "3 rows have a NULL image_id"."""
    sample = sample_json(sample_rows or [])
    message = f"{table}: {check} failed ({severity}): {what}"
    if sample_rows:
        quoted = (
            sample if len(sample) <= _MAX_MESSAGE_SAMPLE else sample[:_MAX_MESSAGE_SAMPLE] + "…"
        )
        message += f"; e.g. {quoted}"
    return CheckResult(table, check, severity, False, int(n_failing), sample, message)


def sample_json(rows: list[dict[str, Any]]) -> str:
    """Offending rows as compact JSON; long values shortened, NaN/inf spelled as strings."""
    if not rows:
        return ""
    cleaned = [{str(k): _jsonable(v) for k, v in row.items()} for row in rows[:SAMPLE_ROWS]]
    return json.dumps(cleaned, ensure_ascii=False, separators=(", ", ": "), allow_nan=False)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return (
            value
            if not isinstance(value, str) or len(value) <= _MAX_TEXT
            else value[:_MAX_TEXT] + "…"
        )
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v) for v in value[:8]]
        return items + [f"… {len(value)} items"] if len(value) > 8 else items
    if hasattr(value, "item"):  # numpy scalar
        return _jsonable(value.item())
    return _jsonable(str(value))


def ensure_results_table(con: duckdb.DuckDBPyConnection) -> None:
    """Create `cellstore_meta.check_results` if it does not exist yet."""
    con.execute(f"create schema if not exists {RESULTS_SCHEMA}")
    con.execute(
        f"""
        create table if not exists {RESULTS_TABLE} (
            table_name varchar,
            snapshot_id bigint,
            check_name varchar,
            severity varchar,
            passed boolean,
            n_failing bigint,
            sample varchar,
            message varchar,
            checked_at timestamp with time zone
        )
        """
    )


def record_check_results(
    con: duckdb.DuckDBPyConnection, results: list[CheckResult], snapshot_id: int | None
) -> None:
    """Append results to `cellstore_meta.check_results` (in the caller's transaction, if any)."""
    ensure_results_table(con)
    if not results:
        return
    checked_at = datetime.now(UTC)
    params: list[Any] = []
    for r in results:
        params += [
            r.table,
            snapshot_id,
            r.check,
            r.severity,
            r.passed,
            r.n_failing,
            r.sample,
            r.message,
            checked_at,
        ]
    # One multi-row INSERT: DuckLake writes one data change instead of one per result.
    placeholders = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(results))
    con.execute(f"insert into {RESULTS_TABLE} values {placeholders}", params)
