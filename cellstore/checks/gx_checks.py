"""Column value checks compiled to Great Expectations 1.x suites, run on pandas batches."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import duckdb

from .contract import CheckSpec
from .results import SAMPLE_ROWS, CheckResult, failed_result, passed_result
from .sql_checks import CheckTarget, quote_ident

# Rows per pandas batch: bounds memory (only checked and key columns are read) and keeps GX's
# per-batch overhead small (~0.1 s per expectation per million rows, measured).
CHUNK_ROWS = 250_000
SAMPLE_SEED = 42  # reservoir samples are repeatable, so a re-check sees the same rows


@functools.cache
def _batch_definition() -> Any:
    """A pandas batch definition in an ephemeral (in-memory) GX context, built once per process.

    Importing GX costs ~2.5 s, so this runs only when a table has GX checks. The ephemeral
    context writes no files; usage statistics and progress bars are off.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        # GX's default ephemeral config reserves a temporary folder for a docs site: none here.
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    datasource = context.data_sources.add_pandas("cellstore_checks")
    asset = datasource.add_dataframe_asset("table_batch")
    return asset.add_batch_definition_whole_dataframe("whole_batch")


def build_suite(table: str, specs: list[CheckSpec]) -> Any:
    """The GX ExpectationSuite a contract's column value checks compile to."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=f"cellstore.{table}")
    for spec in specs:
        column, options = spec.columns[0], spec.options
        common: dict[str, Any] = {"column": column, "meta": {"check": spec.name}}
        if options.get("mostly") is not None:
            common["mostly"] = float(options["mostly"])
        if spec.kind == "range":
            strict = bool(options.get("strict", False))
            expectation = gxe.ExpectColumnValuesToBeBetween(
                min_value=options.get("min"),
                max_value=options.get("max"),
                strict_min=strict,
                strict_max=strict,
                **common,
            )
        elif spec.kind == "accepted_values":
            expectation = gxe.ExpectColumnValuesToBeInSet(
                value_set=list(options["values"]), **common
            )
        elif spec.kind == "match":
            expectation = gxe.ExpectColumnValuesToMatchRegex(regex=options["regex"], **common)
        else:
            raise ValueError(f"check {spec.name}: {spec.kind} is not a Great Expectations check")
        suite.add_expectation(expectation)
    return suite


@dataclass
class _Tally:
    """Counts of one expectation summed over batches."""

    n_rows: int = 0
    n_missing: int = 0
    n_unexpected: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def run_gx_checks(
    con: duckdb.DuckDBPyConnection,
    target: CheckTarget,
    specs: list[CheckSpec],
    chunk_rows: int = CHUNK_ROWS,
) -> list[CheckResult]:
    """Validate `specs` (range, accepted_values, match) on the table, batch by batch."""
    results: dict[str, CheckResult] = {}
    exact = [s for s in specs if s.options.get("sample") is None]
    if exact:
        results.update(_validate(con, target, exact, None, chunk_rows))
    for size in sorted({s.options["sample"] for s in specs if s.options.get("sample")}):
        sampled = [s for s in specs if s.options.get("sample") == size]
        results.update(_validate(con, target, sampled, int(size), chunk_rows))
    return [results[s.name] for s in specs]


def _validate(
    con: duckdb.DuckDBPyConnection,
    target: CheckTarget,
    specs: list[CheckSpec],
    sample_rows: int | None,
    chunk_rows: int,
) -> dict[str, CheckResult]:
    batch_definition = _batch_definition()
    suite = build_suite(target.table, specs)
    checked = list(dict.fromkeys(s.columns[0] for s in specs))
    columns = list(dict.fromkeys([*target.sample_keys, *checked]))
    select = ", ".join(quote_ident(c) for c in columns)
    sampling = (
        f" tablesample reservoir({sample_rows} rows) repeatable ({SAMPLE_SEED})"
        if sample_rows
        else ""
    )
    tallies = {s.name: _Tally() for s in specs}
    reader = con.execute(f"select {select} from {target.source}{sampling}").to_arrow_reader(
        chunk_rows
    )
    for record_batch in reader:
        if record_batch.num_rows == 0:
            continue
        frame = record_batch.to_pandas()
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        # BASIC: counts plus up to 20 unexpected values. Asking GX for the offending rows'
        # keys (SUMMARY + unexpected_index_column_names) took 14 s for 333k failures.
        validation = batch.validate(suite, result_format="BASIC")
        for outcome in validation.results:
            spec_name = outcome.expectation_config.meta["check"]
            _accumulate(tallies[spec_name], outcome, frame, target, spec_name, specs)
    return {s.name: _result(target, s, tallies[s.name], sample_rows) for s in specs}


def _accumulate(
    tally: _Tally, outcome: Any, frame: Any, target: CheckTarget, name: str, specs: list[CheckSpec]
) -> None:
    info = outcome.exception_info or {}
    if info.get("raised_exception"):
        tally.error = str(info.get("exception_message") or "Great Expectations raised an error")
        return
    result = outcome.result
    tally.n_rows += int(result.get("element_count", 0))
    tally.n_missing += int(result.get("missing_count", 0) or 0)
    unexpected = int(result.get("unexpected_count", 0) or 0)
    tally.n_unexpected += unexpected
    if unexpected and len(tally.sample) < SAMPLE_ROWS:
        spec = next(s for s in specs if s.name == name)
        column = spec.columns[0]
        values = result.get("partial_unexpected_list") or []
        shown = list(dict.fromkeys([*target.sample_keys, column]))
        rows = frame.loc[frame[column].isin(values), shown].head(SAMPLE_ROWS - len(tally.sample))
        tally.sample.extend(rows.to_dict(orient="records"))


def _result(
    target: CheckTarget, spec: CheckSpec, tally: _Tally, sample_rows: int | None
) -> CheckResult:
    scope = f" (in a random sample of {sample_rows} rows)" if sample_rows else ""
    if tally.error is not None:
        return failed_result(
            target.table,
            spec.name,
            spec.severity,
            0,
            f"Great Expectations could not evaluate it: {tally.error}",
        )
    mostly = spec.options.get("mostly")
    non_missing = tally.n_rows - tally.n_missing
    if mostly is None:
        ok = tally.n_unexpected == 0
    else:
        ok = non_missing == 0 or tally.n_unexpected / non_missing <= 1 - float(mostly)
    if ok:
        return passed_result(target.table, spec.name, spec.severity)
    share = f" of {non_missing} non-null" if mostly is not None else ""
    what = f"{tally.n_unexpected}{share} row(s) have {spec.columns[0]} {_violation(spec)}{scope}"
    if mostly is not None:
        what += f", more than the allowed {1 - float(mostly):.2%}"
    return failed_result(
        target.table, spec.name, spec.severity, tally.n_unexpected, what, tally.sample
    )


def _violation(spec: CheckSpec) -> str:
    """What an offending value does, in words: "outside [0, 100]"."""
    options = spec.options
    if spec.kind == "range":
        low = "-inf" if options.get("min") is None else options["min"]
        high = "inf" if options.get("max") is None else options["max"]
        return f"outside {'(' if options.get('strict') else '['}{low}, {high}" + (
            ")" if options.get("strict") else "]"
        )
    if spec.kind == "accepted_values":
        values = [str(v) for v in options["values"]]
        shown = ", ".join(values[:8]) + (" …" if len(values) > 8 else "")
        return f"not among the accepted values ({shown})"
    return f"not matching /{options['regex']}/"
