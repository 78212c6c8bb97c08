"""Table contracts: `schemas/<table>.yml` parsed into typed, validated specs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SEVERITIES = ("error", "warn")
# run: what one run measured or named (seconds, rates, a run id): not the table's content,
# so left out when two builds are compared (`run_columns`, cellstore.engine.verify).
ROLES = ("key", "meta", "label", "feature", "vector", "run")

# Check kinds, by where they are declared. See schemas/README.md for their meaning.
COLUMN_KINDS = ("not_null", "finite", "nonzero_norm", "vector", "range", "accepted_values", "match")
GROUP_KINDS = ("finite", "nonzero_norm", "vector")
TABLE_KINDS = ("unique", "row_count", "relationship", "row_accounting", "sql")
# Kinds that run as Great Expectations expectations on pandas batches; the rest run as SQL.
GX_KINDS = frozenset({"range", "accepted_values", "match"})
# Options every check accepts, on top of its own.
COMMON_OPTIONS = {"severity", "description"}
KIND_OPTIONS: dict[str, set[str]] = {
    "not_null": set(),
    "finite": set(),
    "nonzero_norm": set(),
    "vector": {"dim"},
    "range": {"min", "max", "strict", "mostly", "sample"},
    "accepted_values": {"values", "mostly", "sample"},
    "match": {"regex", "mostly", "sample"},
    "unique": {"columns"},
    "row_count": {"min", "max"},
    "relationship": {"columns", "to", "to_columns", "where"},
    "row_accounting": {"input", "input_query", "rejected", "key"},
    "sql": {"name", "query"},
}

# DuckDB type aliases → the spelling `DESCRIBE` prints.
_TYPE_ALIASES = {
    "TEXT": "VARCHAR",
    "STRING": "VARCHAR",
    "CHAR": "VARCHAR",
    "BPCHAR": "VARCHAR",
    "INT": "INTEGER",
    "INT4": "INTEGER",
    "INT8": "BIGINT",
    "LONG": "BIGINT",
    "INT2": "SMALLINT",
    "SHORT": "SMALLINT",
    "INT1": "TINYINT",
    "REAL": "FLOAT",
    "FLOAT4": "FLOAT",
    "FLOAT8": "DOUBLE",
    "BOOL": "BOOLEAN",
    "LOGICAL": "BOOLEAN",
    "BYTEA": "BLOB",
    "BINARY": "BLOB",
    "VARBINARY": "BLOB",
    "TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE",
    "DATETIME": "TIMESTAMP",
    "NUMERIC": "DECIMAL",
}
_ALIAS_RE = re.compile(r"\b(" + "|".join(_TYPE_ALIASES) + r")\b")
_NUMERIC_BASES = frozenset(
    "TINYINT SMALLINT INTEGER BIGINT HUGEINT UTINYINT USMALLINT UINTEGER UBIGINT UHUGEINT "
    "FLOAT DOUBLE DECIMAL".split()
)


class SchemaError(ValueError):
    """A contract file that does not follow the format of schemas/README.md."""


def normalize_type(type_name: str) -> str:
    """Canonical DuckDB spelling of a type: upper case, aliases resolved, single spaces."""
    text = " ".join(str(type_name).upper().split())
    text = _ALIAS_RE.sub(lambda m: _TYPE_ALIASES[m.group(1)], text)
    return text.replace(" [", "[").replace(", ", ",").replace("( ", "(").replace(" )", ")")


def types_match(declared: str, actual: str) -> bool:
    """Whether an actual column type satisfies a declared one (`DECIMAL` matches any precision)."""
    want, got = normalize_type(declared), normalize_type(actual)
    if want == got:
        return True
    return want == "DECIMAL" and got.startswith("DECIMAL(")


def is_list_type(type_name: str) -> bool:
    """`FLOAT[]`, `DOUBLE[]` ... (variable-length lists; DuckLake has no fixed-size arrays)."""
    return normalize_type(type_name).endswith("[]")


def is_numeric_type(type_name: str) -> bool:
    """Integer, floating or decimal scalar type."""
    base = normalize_type(type_name).split("(")[0]
    return base in _NUMERIC_BASES


@dataclass(frozen=True)
class ColumnGroup:
    """Wide feature columns declared by a regex instead of one by one."""

    pattern: str
    type: str
    role: str
    min_columns: int = 1
    description: str = ""

    def matches(self, column: str) -> bool:
        return re.search(self.pattern, column) is not None


@dataclass(frozen=True)
class CheckSpec:
    """One declared check. `columns` are the checked columns (table checks: the key)."""

    kind: str
    name: str
    severity: str
    columns: tuple[str, ...] = ()
    group: ColumnGroup | None = None
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def engine(self) -> str:
        """`gx` (Great Expectations on pandas batches) or `sql` (DuckDB)."""
        return "gx" if self.kind in GX_KINDS else "sql"


@dataclass(frozen=True)
class ColumnSpec:
    """One declared column."""

    name: str
    type: str
    role: str
    description: str = ""
    nullable: bool = True


@dataclass(frozen=True)
class TableContract:
    """Everything `schemas/<table>.yml` declares about one table."""

    table: str
    path: Path
    description: str
    grain: tuple[str, ...]
    columns: tuple[ColumnSpec, ...]
    groups: tuple[ColumnGroup, ...]
    checks: tuple[CheckSpec, ...]

    def column(self, name: str) -> ColumnSpec | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def sample_keys(self) -> tuple[str, ...]:
        """Columns that identify a row in failure samples: the grain, else the key columns."""
        keys = self.grain or tuple(c.name for c in self.columns if c.role == "key")
        return keys[:4]


def contract_path(schema_dir: Path, table: str) -> Path:
    """Where the contract of `table` lives."""
    return Path(schema_dir) / f"{table}.yml"


def load_contract(path: Path) -> TableContract:
    """Parse and validate one contract file; raise SchemaError naming the file and the problem."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SchemaError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise SchemaError(f"{path}: expected a mapping with 'table' and 'columns'")
    return _parse_contract(doc, path)


def _parse_contract(doc: dict[str, Any], path: Path) -> TableContract:
    _reject_unknown(
        doc,
        {
            "table",
            "description",
            "grain",
            "severity",
            "columns",
            "column_groups",
            "checks",
            "feature_source",  # read by cellstore.profiling.feature_sources
        },
        f"{path}",
    )
    table = doc.get("table")
    if not isinstance(table, str) or not table:
        raise SchemaError(f"{path}: 'table' must name the table")
    if table != path.stem:
        raise SchemaError(f"{path}: 'table: {table}' does not match the file name {path.name}")
    default_severity = _severity(doc.get("severity", "error"), f"{path}")

    raw_columns = doc.get("columns") or []
    if not isinstance(raw_columns, list):
        raise SchemaError(f"{path}: 'columns' must be a list of {{name, type, role}} mappings")
    columns: list[ColumnSpec] = []
    checks: list[CheckSpec] = []
    for i, raw in enumerate(raw_columns):
        where = f"{path}: columns[{i}]"
        if not isinstance(raw, dict):
            raise SchemaError(f"{where}: expected a mapping with name, type, role")
        _reject_unknown(raw, {"name", "type", "role", "description", "nullable", "checks"}, where)
        column = _column(raw, where)
        if any(c.name == column.name for c in columns):
            raise SchemaError(f"{where}: column {column.name!r} declared twice")
        columns.append(column)
        for raw_check in _as_list(raw.get("checks"), f"{where}.checks"):
            checks.extend(_column_checks(raw_check, column, default_severity, f"{where}.checks"))

    groups: list[ColumnGroup] = []
    for i, raw in enumerate(_as_list(doc.get("column_groups"), f"{path}: column_groups")):
        where = f"{path}: column_groups[{i}]"
        if not isinstance(raw, dict):
            raise SchemaError(f"{where}: expected a mapping with pattern, type, role")
        _reject_unknown(
            raw, {"pattern", "type", "role", "min_columns", "description", "checks"}, where
        )
        group = _group(raw, where)
        groups.append(group)
        for raw_check in _as_list(raw.get("checks"), f"{where}.checks"):
            checks.extend(_group_checks(raw_check, group, default_severity, f"{where}.checks"))
    if not columns and not groups:
        raise SchemaError(f"{path}: declare at least one column (or column group)")

    declared = {c.name for c in columns}
    grain = tuple(_names(doc.get("grain"), f"{path}: grain"))
    _require_declared(grain, declared, f"{path}: grain")
    for i, raw_check in enumerate(_as_list(doc.get("checks"), f"{path}: checks")):
        where = f"{path}: checks[{i}]"
        checks.append(_table_check(raw_check, declared, default_severity, where))

    names = [c.name for c in checks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SchemaError(f"{path}: checks declared twice: {', '.join(duplicates)}")
    if grain:  # the row key first (unless declared explicitly): it identifies later samples
        grain_checks = [CheckSpec("not_null", f"not_null({n})", "error", (n,)) for n in grain]
        grain_checks.append(CheckSpec("unique", f"unique({', '.join(grain)})", "error", grain))
        checks[:0] = [c for c in grain_checks if c.name not in names]
    return TableContract(
        table=table,
        path=path,
        description=str(doc.get("description") or ""),
        grain=grain,
        columns=tuple(columns),
        groups=tuple(groups),
        checks=tuple(checks),
    )


def _column(raw: dict[str, Any], where: str) -> ColumnSpec:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise SchemaError(f"{where}: 'name' is required")
    type_name = raw.get("type")
    if not isinstance(type_name, str) or not type_name.strip():
        raise SchemaError(f"{where} ({name}): 'type' is required (a DuckDB type, e.g. VARCHAR)")
    return ColumnSpec(
        name=name,
        type=normalize_type(type_name),
        role=_role(raw.get("role"), f"{where} ({name})"),
        description=str(raw.get("description") or ""),
        nullable=bool(raw.get("nullable", True)),
    )


def _group(raw: dict[str, Any], where: str) -> ColumnGroup:
    pattern = raw.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise SchemaError(f"{where}: 'pattern' (a regex) is required")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise SchemaError(f"{where}: pattern {pattern!r} is not a valid regex: {exc}") from exc
    type_name = raw.get("type")
    if not isinstance(type_name, str) or not type_name.strip():
        raise SchemaError(f"{where}: 'type' is required")
    min_columns = raw.get("min_columns", 1)
    if not isinstance(min_columns, int) or min_columns < 0:
        raise SchemaError(f"{where}: 'min_columns' must be a non-negative integer")
    return ColumnGroup(
        pattern=pattern,
        type=normalize_type(type_name),
        role=_role(raw.get("role"), where),
        min_columns=min_columns,
        description=str(raw.get("description") or ""),
    )


def _split_check(raw: Any, where: str) -> tuple[str, dict[str, Any]]:
    """`not_null` → ('not_null', {}); `{range: {min: 0}}` → ('range', {'min': 0}).

    Common options may also sit beside the kind: `{unique: [a, b], severity: warn}`.
    """
    if isinstance(raw, str):
        return raw, {}
    if isinstance(raw, dict):
        kinds = [k for k in raw if k not in COMMON_OPTIONS]
        if len(kinds) == 1:
            kind = kinds[0]
            options = raw[kind] if raw[kind] is not None else {}
            if isinstance(options, (list, str)) and kind == "unique":
                options = {"columns": options}
            if not isinstance(options, dict):
                raise SchemaError(f"{where}: options of {kind!r} must be a mapping")
            beside = {k: v for k, v in raw.items() if k != kind}
            return str(kind), {**options, **beside}
    raise SchemaError(
        f"{where}: a check is a word (not_null) or a one-key mapping (range: {{...}})"
    )


def _column_checks(
    raw: Any, column: ColumnSpec, default_severity: str, where: str
) -> list[CheckSpec]:
    kind, options = _split_check(raw, where)
    if kind not in COLUMN_KINDS:
        raise SchemaError(
            f"{where}: unknown column check {kind!r} (one of {', '.join(COLUMN_KINDS)})"
        )
    _check_options(kind, options, where)
    where = f"{where} {kind}({column.name})"
    listy = is_list_type(column.type)
    if kind in ("range",) and (listy or not _is_orderable(column.type)):
        raise SchemaError(f"{where}: range needs a numeric or temporal column, not {column.type}")
    if kind in ("accepted_values", "match") and listy:
        raise SchemaError(f"{where}: {kind} needs a scalar column, not {column.type}")
    numeric_list = listy and is_numeric_type(column.type.removesuffix("[]"))
    if kind in ("nonzero_norm", "vector") and not numeric_list:
        raise SchemaError(f"{where}: {kind} needs a numeric list column (FLOAT[]) or a group")
    if kind == "finite" and not (numeric_list or is_numeric_type(column.type)):
        raise SchemaError(
            f"{where}: finite needs a numeric or numeric list column, not {column.type}"
        )
    severity = _severity(options.pop("severity", default_severity), where)
    description = str(options.pop("description", "") or "")
    _validate_gx_options(kind, options, where)
    cols = (column.name,)
    if kind == "vector":
        specs = [
            CheckSpec("finite", f"finite({column.name})", severity, cols, None, {}, description),
            CheckSpec(
                "nonzero_norm",
                f"nonzero_norm({column.name})",
                severity,
                cols,
                None,
                {},
                description,
            ),
        ]
        if "dim" in options:
            dim = options["dim"]
            if not isinstance(dim, int) or dim < 1:
                raise SchemaError(f"{where}: 'dim' must be a positive integer")
            specs.append(
                CheckSpec(
                    "vector_dim",
                    f"vector_dim({column.name}, {dim})",
                    severity,
                    cols,
                    None,
                    {"dim": dim},
                    description,
                )
            )
        return specs
    return [
        CheckSpec(
            kind,
            _column_check_name(kind, column.name, options),
            severity,
            cols,
            None,
            options,
            description,
        )
    ]


def _group_checks(
    raw: Any, group: ColumnGroup, default_severity: str, where: str
) -> list[CheckSpec]:
    kind, options = _split_check(raw, where)
    if kind not in GROUP_KINDS:
        raise SchemaError(
            f"{where}: unknown group check {kind!r} (one of {', '.join(GROUP_KINDS)})"
        )
    _check_options(kind, options, where)
    if "dim" in options:
        raise SchemaError(f"{where}: 'dim' does not apply to a group (use min_columns)")
    severity = _severity(options.pop("severity", default_severity), where)
    description = str(options.pop("description", "") or "")
    kinds = ("finite", "nonzero_norm") if kind == "vector" else (kind,)
    return [
        CheckSpec(k, f"{k}(/{group.pattern}/)", severity, (), group, {}, description) for k in kinds
    ]


def _table_check(raw: Any, declared: set[str], default_severity: str, where: str) -> CheckSpec:
    kind, options = _split_check(raw, where)
    if kind not in TABLE_KINDS:
        raise SchemaError(
            f"{where}: unknown table check {kind!r} (one of {', '.join(TABLE_KINDS)})"
        )
    _check_options(kind, options, where)
    severity = _severity(options.pop("severity", default_severity), where)
    description = str(options.pop("description", "") or "")
    where = f"{where} {kind}"
    if kind == "unique":
        columns = tuple(_names(options.get("columns"), f"{where}: columns"))
        if not columns:
            raise SchemaError(f"{where}: name the key column(s): unique: [a, b]")
        _require_declared(columns, declared, where)
        return CheckSpec(
            kind, f"unique({', '.join(columns)})", severity, columns, None, {}, description
        )
    if kind == "row_count":
        bounds = {k: options[k] for k in ("min", "max") if options.get(k) is not None}
        if not bounds:
            raise SchemaError(f"{where}: give min and/or max")
        for key, value in bounds.items():
            if not isinstance(value, int) or value < 0:
                raise SchemaError(f"{where}: {key} must be a non-negative integer")
        label = ", ".join(f"{k}={v}" for k, v in bounds.items())
        return CheckSpec(kind, f"row_count({label})", severity, (), None, bounds, description)
    if kind == "relationship":
        columns = tuple(_names(options.get("columns"), f"{where}: columns"))
        to = options.get("to")
        if not columns or not isinstance(to, str) or not to:
            raise SchemaError(f"{where}: give columns: [...] and to: <table>")
        _require_declared(columns, declared, where)
        to_columns = tuple(_names(options.get("to_columns"), f"{where}: to_columns")) or columns
        if len(to_columns) != len(columns):
            raise SchemaError(f"{where}: columns and to_columns differ in length")
        where_sql = options.get("where")
        if where_sql is not None and not isinstance(where_sql, str):
            raise SchemaError(f"{where}: 'where' must be an SQL condition (a string)")
        target = to if to_columns == columns else f"{to}({', '.join(to_columns)})"
        name = f"relationship({', '.join(columns)} -> {target})"
        opts = {"to": to, "to_columns": to_columns, "where": where_sql}
        return CheckSpec(kind, name, severity, columns, None, opts, description)
    if kind == "row_accounting":
        source, query = options.get("input"), options.get("input_query")
        if (source is None) == (query is None):
            raise SchemaError(
                f"{where}: give exactly one of input: <table> or input_query: <SELECT>"
            )
        rejected = options.get("rejected")
        if rejected is not None and not isinstance(rejected, str):
            raise SchemaError(f"{where}: rejected must name a table")
        key = tuple(_names(options.get("key"), f"{where}: key"))
        _require_declared(key, declared, where)
        label = f"{source or 'input_query'} = <this>" + (f" + {rejected}" if rejected else "")
        opts = {"input": source, "input_query": query, "rejected": rejected}
        return CheckSpec(kind, f"row_accounting({label})", severity, key, None, opts, description)
    # kind == "sql"
    name, query = options.get("name"), options.get("query")
    if not isinstance(name, str) or not name or not isinstance(query, str) or not query.strip():
        raise SchemaError(f"{where}: give name: <check name> and query: <SELECT offending rows>")
    return CheckSpec(
        kind, f"sql({name})", severity, (), None, {"query": query.strip().rstrip(";")}, description
    )


def _column_check_name(kind: str, column: str, options: dict[str, Any]) -> str:
    if kind == "range":
        bounds = ", ".join(
            f"{k}={options[k]}" for k in ("min", "max") if options.get(k) is not None
        )
        return f"range({column}, {bounds})"
    if kind == "match":
        return f"match({column}, {options.get('regex')})"
    return f"{kind}({column})"


def _validate_gx_options(kind: str, options: dict[str, Any], where: str) -> None:
    if kind == "range" and options.get("min") is None and options.get("max") is None:
        raise SchemaError(f"{where}: give min and/or max")
    if kind == "accepted_values":
        values = options.get("values")
        if not isinstance(values, list) or not values:
            raise SchemaError(f"{where}: give values: [a, b, ...]")
    if kind == "match":
        regex = options.get("regex")
        if not isinstance(regex, str):
            raise SchemaError(f"{where}: give regex: <pattern>")
        try:
            re.compile(regex)
        except re.error as exc:
            raise SchemaError(f"{where}: regex {regex!r} is invalid: {exc}") from exc
    mostly = options.get("mostly")
    if mostly is not None and not (isinstance(mostly, (int, float)) and 0 < mostly <= 1):
        raise SchemaError(f"{where}: mostly must be a fraction in (0, 1]")
    sample = options.get("sample")
    if sample is not None and not (isinstance(sample, int) and sample > 0):
        raise SchemaError(f"{where}: sample must be a positive number of rows")


def _check_options(kind: str, options: dict[str, Any], where: str) -> None:
    unknown = set(options) - KIND_OPTIONS[kind] - COMMON_OPTIONS
    if unknown:
        allowed = ", ".join(sorted(KIND_OPTIONS[kind] | COMMON_OPTIONS))
        raise SchemaError(f"{where}: {kind} has no option {', '.join(sorted(unknown))} ({allowed})")


def _is_orderable(type_name: str) -> bool:
    base = normalize_type(type_name)
    return is_numeric_type(base) or base.startswith(("DATE", "TIMESTAMP", "TIME"))


def _severity(value: Any, where: str) -> str:
    if value not in SEVERITIES:
        raise SchemaError(f"{where}: severity must be 'error' or 'warn', not {value!r}")
    return str(value)


def _role(value: Any, where: str) -> str:
    if value not in ROLES:
        raise SchemaError(f"{where}: role must be one of {', '.join(ROLES)}, not {value!r}")
    return str(value)


def _names(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value):
        return list(value)
    raise SchemaError(f"{where}: expected a column name or a list of column names")


def _as_list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SchemaError(f"{where}: expected a list")
    return value


def _require_declared(names: tuple[str, ...], declared: set[str], where: str) -> None:
    missing = [n for n in names if n not in declared]
    if missing:
        raise SchemaError(f"{where}: column(s) {', '.join(missing)} not declared under columns")


def _reject_unknown(doc: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(doc) - allowed
    if unknown:
        raise SchemaError(
            f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )


def run_columns(schema_dir: Path) -> dict[str, list[str]]:
    """{table: its columns of role `run`} over every contract in schema_dir."""
    out: dict[str, list[str]] = {}
    for path in sorted(Path(schema_dir).glob("*.yml")):
        if "role: run" not in path.read_text(encoding="utf-8"):
            continue  # cheap: most contracts have none
        contract = load_contract(path)
        columns = [c.name for c in contract.columns if c.role == "run"]
        if columns:
            out[contract.table] = columns
    return out
