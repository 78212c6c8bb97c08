"""Run a table's contract against the table: drift first, then SQL and GX checks in order."""

from __future__ import annotations

from pathlib import Path

import duckdb

from .contract import CheckSpec, SchemaError, TableContract, contract_path, load_contract
from .results import CheckResult, failed_result
from .sql_checks import CheckTarget, check_schema_drift, run_sql_check


def run_table_checks(
    con: duckdb.DuckDBPyConnection,
    table: str,
    schema_dir: Path = Path("schemas"),
    *,
    chunk_rows: int | None = None,
) -> list[CheckResult]:
    """Check `table` (visible by its plain name on `con`) against `schema_dir/<table>.yml`.

    Never raises for a bad table or contract: problems come back as failed results. A missing
    contract is one `warn`; an invalid contract, a missing table or schema drift are errors.
    """
    path = contract_path(schema_dir, table)
    if not path.is_file():
        return [
            failed_result(table, "schema.exists", "warn", 0, f"no contract: {path} does not exist")
        ]
    try:
        contract = load_contract(path)
    except SchemaError as exc:
        return [failed_result(table, "schema.file", "error", 0, str(exc))]
    try:
        results, target = check_schema_drift(con, contract)
    except duckdb.CatalogException:
        return [
            failed_result(table, "schema.table_exists", "error", 0, f"table {table} does not exist")
        ]
    return results + _run_declared_checks(con, contract, target, chunk_rows)


def _run_declared_checks(
    con: duckdb.DuckDBPyConnection,
    contract: TableContract,
    target: CheckTarget,
    chunk_rows: int | None,
) -> list[CheckResult]:
    # Checks on a missing or mistyped column are skipped: drift already reported that column.
    runnable = [s for s in contract.checks if all(c in target.checkable for c in s.columns)]
    by_name: dict[str, CheckResult] = {}
    gx_specs = [s for s in runnable if s.engine == "gx"]
    for position, spec in enumerate(s for s in runnable if s.engine == "sql"):
        try:
            by_name[spec.name] = run_sql_check(con, target, spec)
        except duckdb.Error as exc:
            by_name[spec.name] = _could_not_run(contract.table, spec, exc)
            if _transaction_aborted(con):
                rest = [s for s in runnable if s.engine == "sql"][position + 1 :] + gx_specs
                return _ordered(runnable, by_name) + _not_run(contract.table, spec, rest)
    if gx_specs:
        from .gx_checks import CHUNK_ROWS, run_gx_checks

        try:
            gx_results = run_gx_checks(con, target, gx_specs, chunk_rows or CHUNK_ROWS)
            by_name.update((r.check, r) for r in gx_results)
        except Exception as exc:  # noqa: BLE001 (a GX or DuckDB failure is a failed check)
            by_name.update((s.name, _could_not_run(contract.table, s, exc)) for s in gx_specs)
    return _ordered(runnable, by_name)


def _ordered(specs: list[CheckSpec], by_name: dict[str, CheckResult]) -> list[CheckResult]:
    """Results in the order the contract declares its checks."""
    return [by_name[s.name] for s in specs if s.name in by_name]


def _could_not_run(table: str, spec: CheckSpec, exc: Exception) -> CheckResult:
    text = str(exc).strip()
    first_line = text.splitlines()[0] if text else type(exc).__name__
    if not isinstance(exc, duckdb.Error):
        first_line = f"{type(exc).__name__}: {first_line}"
    return failed_result(table, spec.name, spec.severity, 0, f"could not run: {first_line}")


def _transaction_aborted(con: duckdb.DuckDBPyConnection) -> bool:
    """A runtime error inside a transaction aborts it: no further query can run."""
    try:
        con.execute("select 1").fetchall()
    except duckdb.TransactionException:
        return True
    return False


def _not_run(table: str, culprit: CheckSpec, rest: list[CheckSpec]) -> list[CheckResult]:
    if not rest:
        return []
    names = ", ".join(s.name for s in rest)
    return [
        failed_result(
            table,
            "checks.not_run",
            "error",
            len(rest),
            f"{len(rest)} check(s) not run because {culprit.name} aborted the transaction: {names}",
        )
    ]


def contracted_tables(schema_dir: Path) -> list[str]:
    """Tables that have a contract file in `schema_dir`."""
    return sorted(p.stem for p in Path(schema_dir).glob("*.yml"))
