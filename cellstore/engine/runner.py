"""Builds a project: plans stages from fingerprints, runs, checks and commits each atomically."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from cellstore.engine import dag
from cellstore.engine.config import Config
from cellstore.engine.lock import build_lock
from cellstore.engine.project import Project, StageDef
from cellstore.engine.settings import resolve_settings
from cellstore.engine.stage import Parts, StageContext
from cellstore.engine.warehouse import (
    LAKE,
    META_SCHEMA,
    Warehouse,
    run_snapshots,
    table_names,
    transaction,
)
from cellstore.errors import CellstoreError

BUILT_STATUSES = ("built", "incremental")


@dataclass
class StagePlan:
    """What a build will do with one stage, and why."""

    stage: str
    action: str  # "build", "incremental", "skip", "not selected"
    reason: str


@dataclass
class StageResult:
    """How one stage ended in a build."""

    stage: str
    status: str  # "built", "incremental", "up to date", "failed", "blocked"
    reason: str = ""
    n_rows: int | None = None
    duration_s: float = 0.0
    error: str | None = None  # one line naming the stage and the cause
    detail: str | None = None  # the traceback or every failing check, for the run record
    snapshot_id: int | None = None
    checks: list[Any] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in (*BUILT_STATUSES, "up to date")


@dataclass
class BuildResult:
    build_id: str
    results: list[StageResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def first_failure(self) -> StageResult | None:
        return next((r for r in self.results if r.status == "failed"), None)


class Reporter:
    """Receives progress events; the CLI draws them, tests ignore them."""

    def stage_started(self, plan: StagePlan) -> None: ...

    def stage_progress(self, stage: str, advance: float, total: float | None) -> None: ...

    def stage_finished(self, result: StageResult) -> None: ...


class StageFailure(Exception):
    """A stage could not be built; the message names the stage and the cause."""

    def __init__(self, message: str, detail: str | None = None, checks: list[Any] | None = None):
        super().__init__(message)
        self.detail = detail or message
        self.checks = checks or []


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Runner:
    """Plans and runs builds of one project into one warehouse."""

    def __init__(
        self,
        project: Project,
        config: Config,
        warehouse: Warehouse | None = None,
        *,
        overrides: dict[str, Any] | None = None,
        reporter: Reporter | None = None,
    ):
        self.project = project
        self.config = config
        self.warehouse = warehouse or Warehouse(config.warehouse, config.catalog, config.data_path)
        self.settings = resolve_settings(project, config, overrides)
        self.order = dag.topological_order(project)
        self.reporter = reporter or Reporter()

    # ---- state read from the warehouse -------------------------------------------------
    def _last_runs(self, con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
        rows = con.execute(
            f"""
            select stage, run_id, fingerprint, definition_fp, inputs, artifact_dir
            from {META_SCHEMA}.runs
            where status in {BUILT_STATUSES}
            qualify row_number() over (partition by stage order by started_at desc) = 1
            """
        ).fetchall()
        keys = ("stage", "run_id", "fingerprint", "definition_fp", "inputs", "artifact_dir")
        return {r[0]: dict(zip(keys, r, strict=True)) for r in rows}

    def _definition_fp(self, stage: StageDef) -> str:
        version = stage.spec.version if stage.spec else None
        unhashed = stage.spec.unhashed if stage.spec else frozenset()
        settings = {k: v for k, v in self.settings[stage.name].items() if k not in unhashed}
        return _digest(
            {
                "kind": stage.kind,
                "source": stage.source_text,
                "version": version,
                "settings": settings,
            }
        )

    def _inputs(self, stage: StageDef, last_runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """What the stage's inputs are now: the run that last published each input table."""
        inputs: dict[str, Any] = {}
        for table in stage.inputs:
            producer = last_runs.get(self.project.producers[table])
            inputs[table] = producer["run_id"] if producer else None
        if stage.spec and stage.spec.watch:
            ctx = self._context(stage, artifact_dir=None, scratch=self._scratch_root())
            inputs["__watch__"] = stage.spec.watch(self.settings[stage.name], ctx)
        return inputs

    def _scratch_root(self) -> Path:
        return self.warehouse.root / "tmp"

    def _context(
        self,
        stage: StageDef,
        *,
        artifact_dir: Path | None,
        scratch: Path,
        incremental: bool = False,
    ) -> StageContext:
        """What a stage (or its watch hook) may know about where it runs."""
        cache_dir = self.warehouse.root / "cache"

        def progress(advance: float = 1, total: float | None = None) -> None:
            self.reporter.stage_progress(stage.name, advance, total)

        return StageContext(
            stage=stage.name,
            artifact_dir=artifact_dir,
            parts_dir=scratch,
            cache_dir=cache_dir,
            settings=self.settings[stage.name],
            config=self.config,
            is_incremental_run=incremental,
            progress=progress,
        )

    # ---- planning ----------------------------------------------------------------------
    def _decide(
        self,
        stage: StageDef,
        last: dict[str, Any] | None,
        definition_fp: str,
        inputs: dict[str, Any],
        existing: set[str],
        full_refresh: bool,
        changed_upstream: set[str],
    ) -> tuple[str, str]:
        if full_refresh:
            return "build", "full refresh"
        if last is None:
            return "build", "never built"
        missing = [t for t in stage.outputs if t not in existing]
        if missing:
            return "build", f"table {missing[0]} missing"
        if last["definition_fp"] != definition_fp:
            return "build", "code or settings changed"
        old = json.loads(last["inputs"] or "{}")
        changed = sorted(
            {k for k in inputs if old.get(k) != inputs[k]} | (set(stage.inputs) & changed_upstream)
        )
        if not changed:
            return "skip", "up to date"
        names = ", ".join("source files" if k == "__watch__" else k for k in changed)
        action = "incremental" if stage.is_incremental else "build"
        return action, f"input changed: {names}"

    def plan(
        self, selectors: list[str] | None = None, full_refresh: bool = False
    ) -> list[StagePlan]:
        """What `build` would do, without running anything (for --dry-run)."""
        selected = dag.select(self.project, selectors)
        con = self._connect_for_plan()
        last_runs = self._last_runs(con) if con else {}
        existing = table_names(con) if con else set()
        will_change: set[str] = set()  # tables a planned stage will rewrite
        plans = []
        for name in self.order:
            stage = self.project.stages[name]
            if name not in selected:
                plans.append(StagePlan(name, "not selected", ""))
                continue
            action, reason = self._decide(
                stage,
                last_runs.get(name),
                self._definition_fp(stage),
                self._inputs(stage, last_runs),
                existing,
                full_refresh,
                will_change,
            )
            if action != "skip":
                will_change.update(stage.outputs)
            plans.append(StagePlan(name, action, reason))
        return plans

    def _connect_for_plan(self) -> duckdb.DuckDBPyConnection | None:
        if not self.warehouse.exists():
            return None
        return self.warehouse.connect(read_only=True)

    # ---- building ----------------------------------------------------------------------
    def build(self, selectors: list[str] | None = None, full_refresh: bool = False) -> BuildResult:
        """Build the selected stages in DAG order; each commit is one DuckLake snapshot."""
        selected = dag.select(self.project, selectors)
        build_id = uuid.uuid4().hex[:12]
        results: list[StageResult] = []
        with build_lock(self.warehouse.root, self.warehouse.catalog):
            con = self.warehouse.connect()
            try:
                last_runs = self._last_runs(con)
                existing = table_names(con)
                failed: set[str] = set()
                changed: set[str] = set()
                not_committed: list[dict[str, Any]] = []
                for name in self.order:
                    if name not in selected:
                        continue
                    stage = self.project.stages[name]
                    bad_up = [u for u in self.project.upstream_stages(stage) if u in failed]
                    if bad_up:
                        failed.add(name)
                        result = StageResult(name, "blocked", f"upstream {bad_up[0]} failed")
                        self.reporter.stage_finished(result)
                        results.append(result)
                        not_committed.append(self._run_record(build_id, stage, result))
                        continue
                    result = self._build_stage(
                        con, build_id, stage, last_runs, existing, full_refresh, changed
                    )
                    results.append(result)
                    if result.status in BUILT_STATUSES:
                        changed.update(stage.outputs)
                        existing.update(stage.outputs)
                    elif result.status == "failed":
                        failed.add(name)
                        not_committed.append(self._run_record(build_id, stage, result))
                if not_committed:
                    self._record_failures(con, build_id, not_committed, results)
            finally:
                con.close()
        return BuildResult(build_id, results)

    def _build_stage(
        self,
        con: duckdb.DuckDBPyConnection,
        build_id: str,
        stage: StageDef,
        last_runs: dict[str, dict[str, Any]],
        existing: set[str],
        full_refresh: bool,
        changed_upstream: set[str],
    ) -> StageResult:
        started = time.perf_counter()
        missing_inputs = [t for t in stage.inputs if t not in existing]
        definition_fp = self._definition_fp(stage)
        try:
            inputs = self._inputs(stage, last_runs)
        except Exception as exc:  # a watch hook that cannot read its source
            result = StageResult(
                stage.name, "failed", error=f"stage {stage.name}: watch hook failed: {exc}"
            )
            self.reporter.stage_finished(result)
            return result
        action, reason = self._decide(
            stage,
            last_runs.get(stage.name),
            definition_fp,
            inputs,
            existing,
            full_refresh,
            changed_upstream,
        )
        if action == "skip":
            result = StageResult(stage.name, "up to date", reason)
            self.reporter.stage_finished(result)
            return result
        if missing_inputs:
            hint = f"build it first, e.g. --select +{stage.name}"
            result = StageResult(
                stage.name,
                "failed",
                reason,
                error=f"stage {stage.name}: input table {missing_inputs[0]} has not been built "
                f"({hint})",
            )
            self.reporter.stage_finished(result)
            return result
        plan = StagePlan(stage.name, action, reason)
        self.reporter.stage_started(plan)
        run_id = f"{build_id}-{stage.name}"
        record_base = {
            "run_id": run_id,
            "fingerprint": _digest([definition_fp, inputs]),
            "definition_fp": definition_fp,
            "inputs": json.dumps(inputs),
            "settings": json.dumps(self.settings[stage.name], default=str),
        }
        try:
            n_rows, artifact_dir, checks = self._execute(
                con, build_id, run_id, stage, plan, last_runs, record_base, started
            )
        except StageFailure as failure:
            result = StageResult(
                stage.name,
                "failed",
                reason,
                duration_s=time.perf_counter() - started,
                error=str(failure),
                detail=failure.detail,
                checks=failure.checks,
            )
            self.reporter.stage_finished(result)
            return result
        status = "incremental" if action == "incremental" else "built"
        snapshot = run_snapshots(con).get(run_id)
        last_runs[stage.name] = {**record_base, "stage": stage.name, "artifact_dir": artifact_dir}
        result = StageResult(
            stage.name,
            status,
            reason,
            n_rows=n_rows,
            duration_s=time.perf_counter() - started,
            snapshot_id=snapshot,
            checks=checks,
        )
        self.reporter.stage_finished(result)
        return result

    def _execute(
        self,
        con: duckdb.DuckDBPyConnection,
        build_id: str,
        run_id: str,
        stage: StageDef,
        plan: StagePlan,
        last_runs: dict[str, dict[str, Any]],
        record_base: dict[str, Any],
        started: float,
    ) -> tuple[int, str | None, list[Any]]:
        """Run one stage and commit its outputs, checks and run record in one snapshot."""
        incremental = plan.action == "incremental"
        scratch = self._scratch_root() / run_id
        artifact_dir = None
        if stage.is_artifact:
            artifact_dir = self.warehouse.root / "artifacts" / stage.name / run_id
            artifact_dir.mkdir(parents=True, exist_ok=True)
        try:
            if stage.kind == "sql":
                sources = {stage.name: ("sql", stage.sql)}
            else:
                scratch.mkdir(parents=True, exist_ok=True)
                value = self._call_python(con, stage, incremental, last_runs, artifact_dir, scratch)
                sources = self._normalise(stage, value, artifact_dir)
                if stage.spec and stage.spec.watch:
                    # Record the outside state as the stage left it (it may have created it,
                    # as the demo source loader does), so the next build sees no change.
                    inputs = {**json.loads(record_base["inputs"]), **self._inputs(stage, last_runs)}
                    record_base["inputs"] = json.dumps(inputs)
                    record_base["fingerprint"] = _digest([record_base["definition_fp"], inputs])
            message = f"{plan.action} {stage.name}"
            with transaction(con, message, {"run_id": run_id, "stage": stage.name}):
                n_rows = self._write_outputs(con, stage, sources, incremental)
                checks = self._run_checks(con, stage)
                failing = [c for c in checks if not c.passed and c.severity == "error"]
                if failing:
                    raise StageFailure(
                        f"stage {stage.name}: check failed: {failing[0].message}",
                        detail="; ".join(c.message for c in failing),
                        checks=checks,
                    )
                self._insert_run(
                    con,
                    {
                        **record_base,
                        "build_id": build_id,
                        "stage": stage.name,
                        "tables": list(stage.outputs),
                        "status": "incremental" if incremental else "built",
                        "mode": plan.action,
                        "n_rows": n_rows,
                        "duration_s": time.perf_counter() - started,
                        "error": None,
                        "artifact_dir": str(artifact_dir) if artifact_dir else None,
                    },
                )
                # The snapshot this commit will create: builds hold the warehouse's build lock,
                # so no other stage commits in between.
                next_snapshot = con.execute(
                    f"select max(snapshot_id) + 1 from {LAKE}.snapshots()"
                ).fetchone()[0]
                self._record_checks(con, checks, next_snapshot)
            return n_rows, str(artifact_dir) if artifact_dir else None, checks
        except StageFailure:
            if artifact_dir is not None:
                shutil.rmtree(artifact_dir, ignore_errors=True)
            raise
        except Exception as exc:
            if artifact_dir is not None:
                shutil.rmtree(artifact_dir, ignore_errors=True)
            cause = _first_line(exc)
            raise StageFailure(
                f"stage {stage.name} ({stage.path.relative_to(self.project.root)}) failed: {cause}",
                detail=traceback.format_exc(),
            ) from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _call_python(
        self,
        con: duckdb.DuckDBPyConnection,
        stage: StageDef,
        incremental: bool,
        last_runs: dict[str, dict[str, Any]],
        artifact_dir: Path | None,
        scratch: Path,
    ) -> Any:
        spec = stage.spec
        assert spec is not None
        kwargs: dict[str, Any] = {}
        for table in spec.inputs:
            producer = self.project.stages[self.project.producers[table]]
            if producer.is_artifact and table == producer.name:
                kwargs[table] = Path(last_runs[producer.name]["artifact_dir"])
            elif incremental and table == spec.incremental_input:
                kwargs[table] = con.sql(self._unprocessed_sql(stage))
            else:
                kwargs[table] = con.table(table)
        kwargs.update(self.settings[stage.name])
        if spec.wants_ctx:
            (self.warehouse.root / "cache").mkdir(exist_ok=True)
            ctx = self._context(
                stage,
                artifact_dir=artifact_dir,
                scratch=scratch,
                incremental=incremental,
            )
            kwargs["ctx"] = ctx
        return spec.func(**kwargs)

    # ---- incremental bookkeeping -------------------------------------------------------
    @staticmethod
    def _ledger(stage: StageDef) -> str:
        """Metadata table of the keys a stage has processed (images with no cells included)."""
        return f"{META_SCHEMA}.{_quote(stage.name + '__processed')}"

    def _unprocessed_sql(self, stage: StageDef) -> str:
        assert stage.spec and stage.spec.incremental_key and stage.spec.incremental_input
        keys = ", ".join(_quote(k) for k in stage.spec.incremental_key)
        driver = _quote(stage.spec.incremental_input)
        return f"select * from {driver} anti join {self._ledger(stage)} using ({keys})"

    def _update_ledger(
        self, con: duckdb.DuckDBPyConnection, stage: StageDef, incremental: bool
    ) -> None:
        assert stage.spec and stage.spec.incremental_key and stage.spec.incremental_input
        keys = ", ".join(_quote(k) for k in stage.spec.incremental_key)
        driver = _quote(stage.spec.incremental_input)
        ledger = self._ledger(stage)
        if not incremental:
            con.execute(f"create or replace table {ledger} as select distinct {keys} from {driver}")
            return
        new_keys = f"select distinct {keys} from {driver} anti join {ledger} using ({keys})"
        con.execute(f"insert into {ledger} {new_keys}")
        con.execute(f"delete from {ledger} where ({keys}) not in (select {keys} from {driver})")

    # ---- writing -----------------------------------------------------------------------
    def _normalise(
        self, stage: StageDef, value: Any, artifact_dir: Path | None
    ) -> dict[str, tuple[str, Any]]:
        """Turn what a Python stage returned into {table: (kind, payload)}."""
        if value is None and stage.is_artifact and artifact_dir is not None:
            value = _artifact_manifest(artifact_dir)
        if isinstance(value, dict):
            outputs = value
        else:
            outputs = {stage.name: value}
        unknown = sorted(set(outputs) - set(stage.outputs))
        missing = sorted(set(stage.outputs) - set(outputs))
        if unknown or missing:
            raise CellstoreError(
                f"stage {stage.name} returned tables {sorted(outputs)}, "
                f"declared {list(stage.outputs)}"
            )
        sources: dict[str, tuple[str, Any]] = {}
        for table, obj in outputs.items():
            if isinstance(obj, Parts):
                sources[table] = ("parts", [str(p) for p in obj.paths])
            elif obj is None:
                raise CellstoreError(f"stage {stage.name} returned None for table {table}")
            else:
                sources[table] = ("frame", obj)
        return sources

    def _write_outputs(
        self,
        con: duckdb.DuckDBPyConnection,
        stage: StageDef,
        sources: dict[str, tuple[str, Any]],
        incremental: bool,
    ) -> int:
        total = 0
        key = stage.spec.incremental_key if stage.spec else None
        for table, (kind, payload) in sources.items():
            view = f"__cellstore_{table}"
            if kind == "sql":
                select = payload
            elif kind == "parts":
                if payload:
                    files = ", ".join("'" + p.replace("'", "''") + "'" for p in payload)
                    select = f"select * from read_parquet([{files}], union_by_name = true)"
                elif incremental:
                    continue  # nothing new
                else:
                    raise CellstoreError(
                        f"stage {stage.name} returned no Parquet parts for {table}"
                    )
            else:
                con.register(view, payload)
                select = f"select * from {view}"
            if incremental and key:
                keys = ", ".join(_quote(k) for k in key)
                driver = _quote(stage.spec.incremental_input)  # type: ignore[union-attr]
                vanished = f"({keys}) not in (select {keys} from {driver})"
                con.execute(f"delete from {_quote(table)} where {vanished}")
                count = con.execute(f"select count(*) from ({select})").fetchone()[0]
                if count:
                    con.execute(f"insert into {_quote(table)} by name {select}")
            else:
                con.execute(f"create or replace table {_quote(table)} as {select}")
                count = con.execute(f"select count(*) from {_quote(table)}").fetchone()[0]
            if kind == "frame":
                con.unregister(view)
            if table == stage.name:
                total = count
        if key:
            self._update_ledger(con, stage, incremental)
        return total

    def _run_checks(self, con: duckdb.DuckDBPyConnection, stage: StageDef) -> list[Any]:
        try:
            from cellstore.checks import run_table_checks
        except ImportError:  # checks package not installed in this project
            return []
        results: list[Any] = []
        for table in stage.outputs:
            results.extend(run_table_checks(con, table, schema_dir=self.project.schema_dir))
        return results

    @staticmethod
    def _record_checks(
        con: duckdb.DuckDBPyConnection, checks: list[Any], snapshot_id: int | None
    ) -> None:
        """Check results; `snapshot_id` is None for a blocked commit (nothing was published)."""
        if not checks:
            return
        from cellstore.checks import record_check_results

        record_check_results(con, checks, snapshot_id)

    def _run_record(self, build_id: str, stage: StageDef, result: StageResult) -> dict[str, Any]:
        return {
            "run_id": f"{build_id}-{stage.name}",
            "build_id": build_id,
            "stage": stage.name,
            "tables": list(stage.outputs),
            "status": result.status,
            "mode": None,
            "fingerprint": None,
            "definition_fp": None,
            "inputs": None,
            "settings": None,
            "n_rows": None,
            "duration_s": result.duration_s,
            "error": result.detail or result.error or result.reason,
            "artifact_dir": None,
        }

    @staticmethod
    def _insert_run(con: duckdb.DuckDBPyConnection, record: dict[str, Any]) -> None:
        columns = list(record)
        placeholders = ", ".join("?" for _ in columns)
        con.execute(
            f"insert into {META_SCHEMA}.runs ({', '.join(columns)}, started_at) "
            f"values ({placeholders}, now())",
            [record[c] for c in columns],
        )

    def _record_failures(
        self,
        con: duckdb.DuckDBPyConnection,
        build_id: str,
        records: list[dict[str, Any]],
        results: list[StageResult],
    ) -> None:
        """Failed and blocked runs are recorded too, in one metadata-only snapshot."""
        checks = [c for r in results if r.status == "failed" for c in r.checks]
        with transaction(con, "record failures", {"build_id": build_id}):
            for record in records:
                self._insert_run(con, record)
            self._record_checks(con, checks, None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line}" if not isinstance(exc, CellstoreError) else line


def _artifact_manifest(folder: Path) -> Any:
    """One row per file an artifact stage wrote: path, bytes, sha256."""
    import pyarrow as pa

    rows = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        rows.append(
            {
                "path": str(path.relative_to(folder)),
                "bytes": path.stat().st_size,
                "sha256": digest,
                "artifact_dir": str(folder),
            }
        )
    if not rows:
        raise CellstoreError(f"artifact stage wrote no files into {folder}")
    return pa.Table.from_pylist(rows)
