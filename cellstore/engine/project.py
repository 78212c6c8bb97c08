"""Finds a project's stages: `sql/*.sql` and `stages/*.py`, and what each reads and writes."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from cellstore.engine.stage import StageSpec
from cellstore.errors import CellstoreError

# Schemas a SQL stage may read that are not stage outputs (run metadata).
NON_STAGE_SCHEMAS = {"cellstore_meta", "information_schema", "pg_catalog"}


@dataclass
class StageDef:
    """One stage as found on disk."""

    name: str
    kind: str  # "sql" or "python"
    path: Path
    outputs: tuple[str, ...]
    inputs: tuple[str, ...]
    source_text: str
    sql: str | None = None
    spec: StageSpec | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def is_incremental(self) -> bool:
        return self.spec is not None and self.spec.incremental_key is not None

    @property
    def is_artifact(self) -> bool:
        return self.spec is not None and self.spec.artifact

    def describe(self) -> str:
        tags = [self.kind]
        if self.is_incremental:
            tags.append("incremental")
        if self.is_artifact:
            tags.append("artifact")
        return ", ".join(tags)


@dataclass
class Project:
    """All stages of a project, keyed by stage name, and which stage makes each table."""

    root: Path
    stages: dict[str, StageDef]
    producers: dict[str, str]

    @property
    def schema_dir(self) -> Path:
        return self.root / "schemas"

    def stage_for(self, name: str) -> StageDef:
        """A stage by its name or by any table it writes."""
        if name in self.stages:
            return self.stages[name]
        if name in self.producers:
            return self.stages[self.producers[name]]
        known = ", ".join(sorted(self.stages)) or "none"
        raise CellstoreError(f"no stage or table named {name!r} (stages: {known})")

    def upstream_stages(self, stage: StageDef) -> list[str]:
        return sorted({self.producers[t] for t in stage.inputs})


def load_project(root: Path) -> Project:
    """Discover and validate every stage under `root`."""
    root = root.resolve()
    if str(root) not in sys.path:
        sys.path.append(str(root))  # stages may import the project's own modules
    found: list[StageDef] = []
    for path in sorted((root / "sql").glob("*.sql")):
        found.append(_load_sql_stage(path))
    for path in sorted((root / "stages").glob("*.py")):
        if path.name.startswith("_"):
            continue
        found.append(_load_python_stage(path))
    if not found:
        raise CellstoreError(f"no stages in {root}: expected sql/*.sql or stages/*.py")

    stages: dict[str, StageDef] = {}
    producers: dict[str, str] = {}
    for stage in found:
        if stage.name in stages:
            other = stages[stage.name].path
            raise CellstoreError(
                f"duplicate stage {stage.name!r}: {_rel(other, root)} and {_rel(stage.path, root)}"
            )
        stages[stage.name] = stage
        for table in stage.outputs:
            if table in producers:
                other = stages[producers[table]].path
                raise CellstoreError(
                    f"table {table!r} is written by two stages: {_rel(other, root)} and "
                    f"{_rel(stage.path, root)}"
                )
            producers[table] = stage.name
    for stage in found:
        for table in stage.inputs:
            if table not in producers:
                raise CellstoreError(
                    f"{_rel(stage.path, root)} reads table {table!r}, which no stage produces"
                )
    return Project(root=root, stages=stages, producers=producers)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _load_sql_stage(path: Path) -> StageDef:
    text = path.read_text()
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise CellstoreError(f"{path}: SQL does not parse: {_first_line(exc)}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise CellstoreError(f"{path}: a SQL stage must be exactly one SELECT statement")
    inputs = sorted(_tables_read(path, statements[0].query))
    if path.stem in inputs:
        raise CellstoreError(f"{path}: the stage reads its own output {path.stem!r}")
    return StageDef(
        name=path.stem,
        kind="sql",
        path=path,
        outputs=(path.stem,),
        inputs=tuple(inputs),
        source_text=text,
        sql=text.strip().rstrip(";"),
    )


@functools.cache
def _parser() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB for parsing every SQL stage (a connection costs ~20 ms)."""
    return duckdb.connect(":memory:")


def _tables_read(path: Path, query: str) -> set[str]:
    """Tables a query reads, CTE names excluded, from DuckDB's parse tree.

    `duckdb.get_table_names` also runs the binder, which rejects valid stages (a `join ...
    using (col)` on a table it cannot see), so walk the parser's JSON instead.
    """
    literal = "'" + query.replace("'", "''") + "'"
    tree = json.loads(_parser().execute(f"select json_serialize_sql({literal})").fetchone()[0])
    if tree.get("error"):
        raise CellstoreError(f"{path}: SQL does not parse: {tree.get('error_message', '')}")
    tables: set[str] = set()
    _collect_tables(tree, frozenset(), tables)
    return tables


def _collect_tables(node: Any, visible_ctes: frozenset[str], tables: set[str]) -> None:
    """Add base tables under `node` to `tables`; a CTE is visible after its definition."""
    if isinstance(node, list):
        for item in node:
            _collect_tables(item, visible_ctes, tables)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "BASE_TABLE":
        schema, name = node.get("schema_name", ""), node["table_name"]
        if schema not in NON_STAGE_SCHEMAS and not (not schema and name in visible_ctes):
            tables.add(name)
        return
    cte_map = node.get("cte_map")
    if isinstance(cte_map, dict) and cte_map.get("map"):
        scope = set(visible_ctes)
        for entry in cte_map["map"]:
            # `numbers as (select * from numbers)` reads the table: its own name is not yet visible.
            _collect_tables(entry["value"], frozenset(scope), tables)
            scope.add(entry["key"])
        visible_ctes = frozenset(scope)
    for key, value in node.items():
        if key != "cte_map":
            _collect_tables(value, visible_ctes, tables)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


def _load_python_stage(path: Path) -> StageDef:
    module_name = f"cellstore_project_stages.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise CellstoreError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:
        raise CellstoreError(f"{path}: import failed: {type(exc).__name__}: {exc}") from None
    func = getattr(module, path.stem, None)
    stage_spec: StageSpec | None = getattr(func, "__cellstore_stage__", None)
    if stage_spec is None:
        raise CellstoreError(
            f"{path}: expected a function named {path.stem!r} decorated with @stage"
        )
    if stage_spec.name in stage_spec.inputs:
        raise CellstoreError(f"{path}: the stage reads its own output {stage_spec.name!r}")
    return StageDef(
        name=stage_spec.name,
        kind="python",
        path=path,
        outputs=stage_spec.outputs,
        inputs=stage_spec.inputs,
        source_text=path.read_text(),
        spec=stage_spec,
        settings=dict(stage_spec.settings),
    )
