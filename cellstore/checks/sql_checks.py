"""Checks that DuckDB runs exactly: schema drift, nulls, keys, vectors, row counts, cross-table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from .contract import CheckSpec, TableContract, is_list_type, types_match
from .results import SAMPLE_ROWS, CheckResult, failed_result, passed_result, skipped_result


def quote_ident(name: str) -> str:
    """`crops` → `"crops"`; a dotted name is quoted part by part (`lake.main.crops`)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def describe_table(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column name → DuckDB type of `table`, in table order (raises duckdb.CatalogException)."""
    return {row[0]: row[1] for row in con.execute(f"describe {quote_ident(table)}").fetchall()}


@dataclass
class CheckTarget:
    """The table under check as it actually is, after comparing it with its contract."""

    table: str
    columns: dict[str, str]  # actual column → type
    checkable: set[str]  # declared columns present with the declared type
    group_columns: dict[str, list[str]] = field(default_factory=dict)  # pattern → columns
    sample_keys: tuple[str, ...] = ()
    # list column → its screen (one scan shared by finite, nonzero_norm and vector_dim)
    list_screens: dict[str, ListScreen] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return quote_ident(self.table)

    def key_sql(self) -> str:
        """Key columns to show beside offending values (with a trailing comma), or ''."""
        return "".join(f"{quote_ident(k)}, " for k in self.sample_keys)


def check_schema_drift(
    con: duckdb.DuckDBPyConnection, contract: TableContract
) -> tuple[list[CheckResult], CheckTarget]:
    """Compare the table's columns with its contract: missing, extra, mistyped columns."""
    table = contract.table
    actual = describe_table(con, table)
    failures: list[CheckResult] = []
    checkable: set[str] = set()
    for column in contract.columns:
        if column.name not in actual:
            failures.append(
                failed_result(
                    table,
                    f"schema.missing_column({column.name})",
                    "error",
                    1,
                    f"declared column {column.name} ({column.type}) is missing; "
                    f"the table has {_column_list(actual)}",
                )
            )
        elif not types_match(column.type, actual[column.name]):
            failures.append(
                failed_result(
                    table,
                    f"schema.type({column.name})",
                    "error",
                    1,
                    f"column {column.name} is {actual[column.name]}, declared {column.type}",
                )
            )
        else:
            checkable.add(column.name)

    declared = {c.name for c in contract.columns}
    group_columns: dict[str, list[str]] = {g.pattern: [] for g in contract.groups}
    mistyped: dict[str, list[str]] = {g.pattern: [] for g in contract.groups}
    for name, type_name in actual.items():
        if name in declared:
            continue
        group = next((g for g in contract.groups if g.matches(name)), None)
        if group is None:
            failures.append(
                failed_result(
                    table,
                    f"schema.extra_column({name})",
                    "error",
                    1,
                    f"column {name} ({type_name}) is not declared in {contract.path.name}",
                )
            )
        elif not types_match(group.type, type_name):
            mistyped[group.pattern].append(f"{name} ({type_name})")
        else:
            group_columns[group.pattern].append(name)
    for group in contract.groups:
        found = group_columns[group.pattern]
        if mistyped[group.pattern]:
            bad = mistyped[group.pattern]
            failures.append(
                failed_result(
                    table,
                    f"schema.type(/{group.pattern}/)",
                    "error",
                    len(bad),
                    f"{len(bad)} column(s) of group /{group.pattern}/ are not {group.type}: "
                    f"{', '.join(bad[:10])}" + (" …" if len(bad) > 10 else ""),
                )
            )
        if len(found) + len(mistyped[group.pattern]) < group.min_columns:
            failures.append(
                failed_result(
                    table,
                    f"schema.group(/{group.pattern}/)",
                    "error",
                    1,
                    f"{len(found)} column(s) match /{group.pattern}/, expected at least "
                    f"{group.min_columns}",
                )
            )
    results = failures or [passed_result(table, "schema", "error")]
    keys = tuple(k for k in contract.sample_keys if k in actual)
    target = CheckTarget(table, actual, checkable, group_columns, keys)
    return results, target


def run_sql_check(
    con: duckdb.DuckDBPyConnection, target: CheckTarget, spec: CheckSpec
) -> CheckResult:
    """Run one SQL-engine check and return its result (duckdb errors propagate)."""
    runner = _RUNNERS[spec.kind]
    return runner(con, target, spec)


def _failing_rows_result(
    con: duckdb.DuckDBPyConnection,
    target: CheckTarget,
    spec: CheckSpec,
    offending_sql: str,
    what: str,
) -> CheckResult:
    """Count the rows `offending_sql` returns; if any, fetch a few as the sample."""
    n_failing = con.execute(f"select count(*) from ({offending_sql})").fetchone()[0]
    if n_failing == 0:
        return passed_result(target.table, spec.name, spec.severity)
    # Sorted, so the same offenders give the same sample (a top-N, not a full sort).
    sample = _fetch_dicts(con, f"select * from ({offending_sql}) order by all limit {SAMPLE_ROWS}")
    # `what` holds "{n}" for the count; replace, not format: regexes may contain braces.
    return failed_result(
        target.table,
        spec.name,
        spec.severity,
        n_failing,
        what.replace("{n}", str(n_failing)),
        sample,
    )


def _fetch_dicts(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _not_null(con: duckdb.DuckDBPyConnection, target: CheckTarget, spec: CheckSpec) -> CheckResult:
    column = spec.columns[0]
    col = quote_ident(column)
    keys = "".join(f"{quote_ident(k)}, " for k in target.sample_keys if k != column)
    sql = f"select {keys}{col} from {target.source} where {col} is null"
    return _failing_rows_result(con, target, spec, sql, f"{{n}} row(s) have a NULL {column}")


def _finite(con: duckdb.DuckDBPyConnection, target: CheckTarget, spec: CheckSpec) -> CheckResult:
    if spec.group is not None:
        columns = [quote_ident(c) for c in target.group_columns.get(spec.group.pattern, [])]
        if not columns:
            return passed_result(target.table, spec.name, spec.severity)
        # A NULL feature counts as non-finite: a profile with a hole has no defined similarity.
        ok_terms = [f"coalesce(isfinite({c}::double), false)" for c in columns]
        n_bad = " + ".join(f"(not {t})::int" for t in ok_terms)
        sql = (
            f"select {target.key_sql()}{n_bad} as n_nonfinite_columns from {target.source} "
            f"where not ({' and '.join(ok_terms)})"
        )
        what = f"{{n}} row(s) have NaN, inf or NULL in /{spec.group.pattern}/ columns"
        return _failing_rows_result(con, target, spec, sql, what)
    column = spec.columns[0]
    col = quote_ident(column)
    if is_list_type(target.columns[column]):
        if list_screen(con, target, column).n_maybe_nonfinite == 0:
            return passed_result(target.table, spec.name, spec.severity)
        bad_element = "x -> coalesce(not isfinite(x::double), true)"
        sql = (
            f"with candidates as materialized (select * from {target.source} "
            f"where {NONFINITE_SCREEN.format(col=col)}) "
            f"select {target.key_sql()}len({col}) as n_elements, "
            f"len(list_filter({col}, {bad_element})) as n_nonfinite from candidates "
            f"where list_bool_or(list_transform({col}, {bad_element}))"
        )
        what = f"{{n}} row(s) have NaN, inf or NULL elements in {column}"
    else:
        sql = (
            f"select {target.key_sql()}{col} from {target.source} where not isfinite({col}::double)"
        )
        what = f"{{n}} row(s) have a NaN or infinite {column}"
    return _failing_rows_result(con, target, spec, sql, what)


def _nonzero_norm(
    con: duckdb.DuckDBPyConnection, target: CheckTarget, spec: CheckSpec
) -> CheckResult:
    # Zero vectors break cosine similarity (DuckDB's array_cosine_similarity returns -1).
    if spec.group is not None:
        columns = [quote_ident(c) for c in target.group_columns.get(spec.group.pattern, [])]
        if not columns:
            return passed_result(target.table, spec.name, spec.severity)
        zero = " and ".join(f"coalesce({c} = 0, true)" for c in columns)
        sql = (
            f"select {target.key_sql()}{len(columns)} as n_columns "
            f"from {target.source} where {zero}"
        )
        what = f"{{n}} row(s) are all-zero across /{spec.group.pattern}/ columns"
        return _failing_rows_result(con, target, spec, sql, what)
    column = spec.columns[0]
    col = quote_ident(column)
    if list_screen(con, target, column).n_maybe_zero == 0:
        return passed_result(target.table, spec.name, spec.severity)
    exact = f"len({col}) = 0 or list_bool_and(list_transform({col}, x -> coalesce(x = 0, true)))"
    sql = (
        f"with candidates as materialized (select * from {target.source} "
        f"where {ZERO_SCREEN.format(col=col)}) "
        f"select {target.key_sql()}len({col}) as n_elements from candidates where {exact}"
    )
    return _failing_rows_result(con, target, spec, sql, f"{{n}} row(s) have a zero-norm {column}")


# Exact per-element tests (lambdas) cost ~5-30 ns per element. list_dot_product(v, v) runs at
# ~1 ns (SIMD) and one scan of it screens for every vector check of a column; only the rows it
# flags (a superset of the offenders) get the exact lambda test:
# - v·v is NaN/inf if an element is (or if the sum overflows: cleared by the exact test);
# - v·v is 0 for a zero or empty vector (or one that underflows: cleared by the exact test);
# - list_dot_product raises on a NULL element; try() turns that into NULL (without aborting
#   the transaction), and NULL flags the row for both exact tests.
DOT = "try(list_dot_product({col}, {col}))"
NONFINITE_SCREEN = f"({{col}} is not null and coalesce(not isfinite({DOT}), true))"
ZERO_SCREEN = f"({{col}} is not null and coalesce({DOT} = 0, true))"


@dataclass(frozen=True)
class ListScreen:
    """Counts from one scan of a list column: candidate offenders, and the length range."""

    n_maybe_nonfinite: int
    n_maybe_zero: int
    min_length: int | None
    max_length: int | None


def list_screen(con: duckdb.DuckDBPyConnection, target: CheckTarget, column: str) -> ListScreen:
    """Screen a list column once per check run (cached on `target`)."""
    if column not in target.list_screens:
        col = quote_ident(column)
        row = con.execute(
            f"select count(*) filter (where {NONFINITE_SCREEN.format(col=col)}), "
            f"count(*) filter (where {ZERO_SCREEN.format(col=col)}), min(len({col})), "
            f"max(len({col})) from {target.source}"
        ).fetchone()
        target.list_screens[column] = ListScreen(*row)
    return target.list_screens[column]


def _vector_dim(
    con: duckdb.DuckDBPyConnection, target: CheckTarget, spec: CheckSpec
) -> CheckResult:
    column, dim = spec.columns[0], spec.options["dim"]
    screen = list_screen(con, target, column)
    if screen.min_length in (None, dim) and screen.max_length in (None, dim):
        return passed_result(target.table, spec.name, spec.severity)
    col = quote_ident(column)
    sql = (
        f"select {target.key_sql()}len({col}) as n_elements from {target.source} "
        f"where len({col}) <> {int(dim)}"
    )
    return _failing_rows_result(
        con, target, spec, sql, f"{{n}} row(s) have a {column} of length other than {dim}"
    )


def _unique(con: duckdb.DuckDBPyConnection, target: CheckTarget, spec: CheckSpec) -> CheckResult:
    cols = ", ".join(quote_ident(c) for c in spec.columns)
    sql = (
        f"select {cols}, count(*) as n_rows from {target.source} "
        f"group by {cols} having count(*) > 1"
    )
    what = f"{{n}} value(s) of ({', '.join(spec.columns)}) occur more than once"
    return _failing_rows_result(con, target, spec, sql, what)


def _row_count(con: duckdb.DuckDBPyConnection, target: CheckTarget, spec: CheckSpec) -> CheckResult:
    n_rows = con.execute(f"select count(*) from {target.source}").fetchone()[0]
    low, high = spec.options.get("min"), spec.options.get("max")
    if (low is None or n_rows >= low) and (high is None or n_rows <= high):
        return passed_result(target.table, spec.name, spec.severity)
    bounds = " and ".join(
        text
        for text in (
            f"at least {low}" if low is not None else "",
            f"at most {high}" if high is not None else "",
        )
        if text
    )
    return failed_result(
        target.table, spec.name, spec.severity, 1, f"the table has {n_rows} rows, expected {bounds}"
    )


def _relationship(
    con: duckdb.DuckDBPyConnection, target: CheckTarget, spec: CheckSpec
) -> CheckResult:
    parent = spec.options["to"]
    try:
        describe_table(con, parent)
    except duckdb.CatalogException:
        # Not a failure of this table: the other one is not built (yet). Say so, never warn.
        return skipped_result(
            target.table, spec.name, spec.severity, f"table {parent} is not built"
        )
    pairs = list(zip(spec.columns, spec.options["to_columns"], strict=True))
    condition = spec.options.get("where") or "true"
    present = " and ".join(f"child.{quote_ident(c)} is not null" for c, _ in pairs)
    joined = " and ".join(f"parent.{quote_ident(p)} = child.{quote_ident(c)}" for c, p in pairs)
    child_columns = ", ".join(f"child.{quote_ident(c)}" for c, _ in pairs)
    keys = "".join(f"child.{quote_ident(k)}, " for k in target.sample_keys if k not in spec.columns)
    sql = (
        f"with child as (select * from {target.source} where {condition}) "
        f"select {keys}{child_columns} from child where {present} and not exists "
        f"(select 1 from {quote_ident(parent)} as parent where {joined})"
    )
    what = f"{{n}} row(s) have ({', '.join(spec.columns)}) not found in {parent}"
    return _failing_rows_result(con, target, spec, sql, what)


def _row_accounting(
    con: duckdb.DuckDBPyConnection, target: CheckTarget, spec: CheckSpec
) -> CheckResult:
    source = spec.options.get("input")
    input_sql = f"select * from {quote_ident(source)}" if source else spec.options["input_query"]
    rejected = spec.options.get("rejected")
    rejected_sql = f"select * from {quote_ident(rejected)}" if rejected else None
    input_name = source or "input_query"
    if not spec.columns:
        n_input = con.execute(f"select count(*) from ({input_sql})").fetchone()[0]
        n_accepted = con.execute(f"select count(*) from {target.source}").fetchone()[0]
        n_rejected = (
            con.execute(f"select count(*) from ({rejected_sql})").fetchone()[0]
            if rejected_sql
            else 0
        )
        if n_input == n_accepted + n_rejected:
            return passed_result(target.table, spec.name, spec.severity)
        counts = {"input": n_input, "accepted": n_accepted, "rejected": n_rejected}
        return failed_result(
            target.table,
            spec.name,
            spec.severity,
            abs(n_input - n_accepted - n_rejected),
            f"{input_name} has {n_input} rows but {target.table} + {rejected or 'no rejects'} "
            f"hold {n_accepted} + {n_rejected}",
            [counts],
        )
    key = ", ".join(quote_ident(c) for c in spec.columns)
    rejected_keys = (
        f"select {key}, count(*) as n_rejected from ({rejected_sql}) group by all"
        if rejected_sql
        else f"select {key}, 0 as n_rejected from {target.source} where false"
    )
    sql = (
        f"with input_keys as (select {key}, count(*) as n_input from ({input_sql}) group by all), "
        f"accepted_keys as "
        f"(select {key}, count(*) as n_accepted from {target.source} group by all), "
        f"rejected_keys as ({rejected_keys}), "
        f"accounted as (select {key}, coalesce(n_input, 0) as n_input, "
        f"coalesce(n_accepted, 0) as n_accepted, coalesce(n_rejected, 0) as n_rejected "
        f"from input_keys full join accepted_keys using ({key}) "
        f"full join rejected_keys using ({key})) "
        f"select * from accounted where n_input <> 1 or n_accepted + n_rejected <> 1"
    )
    what = f"{{n}} key(s) of {input_name} are not accounted for exactly once in {target.table}" + (
        f" + {rejected}" if rejected else ""
    )
    return _failing_rows_result(con, target, spec, sql, what)


def _free_sql(con: duckdb.DuckDBPyConnection, target: CheckTarget, spec: CheckSpec) -> CheckResult:
    return _failing_rows_result(
        con, target, spec, spec.options["query"], "the query returned {n} offending row(s)"
    )


_RUNNERS = {
    "not_null": _not_null,
    "finite": _finite,
    "nonzero_norm": _nonzero_norm,
    "vector_dim": _vector_dim,
    "unique": _unique,
    "row_count": _row_count,
    "relationship": _relationship,
    "row_accounting": _row_accounting,
    "sql": _free_sql,
}


def _column_list(columns: dict[str, str], limit: int = 12) -> str:
    names = list(columns)
    return ", ".join(names[:limit]) + (f" … ({len(names)} columns)" if len(names) > limit else "")
