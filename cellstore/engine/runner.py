"""Builds a project: plans stages from fingerprints, runs, checks and commits each atomically."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

import cellstore
from cellstore.engine import artifacts, dag, incremental
from cellstore.engine.codegraph import CodeGraph
from cellstore.engine.config import Config
from cellstore.engine.decide import (
    BUILT_STATUSES,
    CODE_KEY,
    WATCH_KEY,
    Action,
    Decision,
    StageFacts,
    Status,
    decide,
    definition_fingerprint,
    run_fingerprint,
)
from cellstore.engine.lock import build_lock
from cellstore.engine.project import Project, StageDef
from cellstore.engine.scratch import clear_scratch
from cellstore.engine.settings import resolve_settings
from cellstore.engine.stage import Parts, StageContext
from cellstore.engine.verify import damaged_tables
from cellstore.engine.warehouse import (
    LAKE,
    META_SCHEMA,
    Warehouse,
    delete_orphaned_files,
    has_metadata,
    run_snapshots,
    table_names,
    transaction,
)
from cellstore.errors import CellstoreError

# Columns added to `cellstore_meta.runs` after its first release (added on first build).
RUN_COLUMNS = {"committed_snapshot": "bigint", "committed_at": "timestamptz"}


@dataclass
class StagePlan:
    """What a build will do with one stage, and why."""

    stage: str
    action: Action | str  # an Action; compares equal to its value ("build", "skip", ...)
    reason: str
    changed_sides: tuple[str, ...] = ()


@dataclass
class StageResult:
    """How one stage ended in a build."""

    stage: str
    status: Status | str  # a Status; compares equal to its value ("built", "failed", ...)
    reason: str = ""
    n_rows: int | None = None
    duration_s: float = 0.0
    error: str | None = None  # one line naming the stage and the cause
    detail: str | None = None  # the traceback or every failing check, for the run record
    snapshot_id: int | None = None
    checks: list[Any] = field(default_factory=list)
    started_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status in (*BUILT_STATUSES, "up to date")


@dataclass
class BuildResult:
    build_id: str
    results: list[StageResult]
    unrecorded: str | None = None  # why failed runs could not be recorded (e.g. disk full)

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
        self.order = dag.topological_order(project, after=_check_reads(project))
        self.reporter = reporter or Reporter()
        package_root = Path(cellstore.__file__).resolve().parent.parent
        self.code_graph = CodeGraph(
            [project.root, package_root], cache_path=self.warehouse.root / "cache" / "code.json"
        )
        self._code: dict[str, dict[str, str]] = {}
        self._run_columns_checked = False
        self.damaged: dict[str, str] = {}  # table → why its files are damaged (verify.py)

    # ---- state read from the warehouse -------------------------------------------------
    def _last_runs(self, con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
        if not has_metadata(con):  # a bare catalog (e.g. a build killed while creating it)
            return {}
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

    # ---- fingerprints ------------------------------------------------------------------
    def _stage_code(self, stage: StageDef) -> dict[str, str]:
        """The stage file, the project modules it imports and third-party versions."""
        if stage.kind != "python":
            return {}
        if stage.name not in self._code:
            self._code[stage.name] = self.code_graph.stage_code(stage.path, self.project.root)
        return self._code[stage.name]

    def _definition_fp(self, stage: StageDef) -> str:
        version = stage.spec.version if stage.spec else None
        unhashed = stage.spec.unhashed if stage.spec else frozenset()
        settings = {k: v for k, v in self.settings[stage.name].items() if k not in unhashed}
        return definition_fingerprint(
            stage.kind, stage.source_text, version, settings, self._stage_code(stage)
        )

    def _inputs(self, stage: StageDef, last_runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """What the stage's inputs are now: the run that last published each input table,
        the watch hook's digest, and the code it runs (kept to name a changed file)."""
        inputs: dict[str, Any] = {}
        for table in stage.inputs:
            producer = last_runs.get(self.project.producers[table])
            inputs[table] = producer["run_id"] if producer else None
        if stage.spec and stage.spec.watch:
            ctx = self._context(stage, artifact_dir=None, scratch=self._scratch_root())
            inputs[WATCH_KEY] = stage.spec.watch(self.settings[stage.name], ctx)
        code = self._stage_code(stage)
        if code:
            inputs[CODE_KEY] = code
        return inputs

    def _facts(self, stage: StageDef) -> StageFacts:
        spec = stage.spec
        artifact_inputs = {
            t
            for t in stage.inputs
            if self.project.stages[self.project.producers[t]].is_artifact
            and t == self.project.producers[t]
        }
        return StageFacts(
            name=stage.name,
            outputs=stage.outputs,
            inputs=stage.inputs,
            incremental_input=spec.incremental_input if spec and spec.incremental_key else None,
            partitions=dict(spec.partitions) if spec else {},
            artifact_inputs=frozenset(artifact_inputs),
        )

    def current_fingerprints(self) -> dict[str, str]:
        """{artifact stage: the fingerprint its next run would have} (for gc)."""
        if not self.warehouse.exists():
            return {}
        con = self.warehouse.connect(read_only=True)
        try:
            last_runs = self._last_runs(con)
        finally:
            con.close()
        return {
            name: run_fingerprint(self._definition_fp(stage), self._inputs(stage, last_runs))
            for name, stage in self.project.stages.items()
            if stage.is_artifact
        }

    def _scratch_root(self) -> Path:
        return self.warehouse.root / "tmp"

    def _context(
        self,
        stage: StageDef,
        *,
        artifact_dir: Path | None,
        scratch: Path,
        incremental: bool = False,
        is_resume: bool = False,
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
            is_resume=is_resume,
            progress=progress,
        )

    # ---- planning ----------------------------------------------------------------------
    def _decide(
        self,
        stage: StageDef,
        last_runs: dict[str, dict[str, Any]],
        existing: set[str],
        full_refresh: bool,
        changed_upstream: set[str],
    ) -> tuple[Decision, str, dict[str, Any]]:
        definition_fp = self._definition_fp(stage)
        inputs = self._inputs(stage, last_runs)
        decision = decide(
            self._facts(stage),
            last_runs.get(stage.name),
            definition_fp,
            inputs,
            existing,
            full_refresh,
            changed_upstream,
            damaged=self.damaged,
        )
        return decision, definition_fp, inputs

    def plan(
        self, selectors: list[str] | None = None, full_refresh: bool = False
    ) -> list[StagePlan]:
        """What `build` would do, without running anything (for --dry-run)."""
        selected = dag.select(self.project, selectors)
        con = self._connect_for_plan()
        last_runs = self._last_runs(con) if con else {}
        existing = table_names(con) if con else set()
        self.damaged = damaged_tables(con, self.warehouse.data_dir) if con else {}
        will_change: set[str] = set()  # tables a planned stage will rewrite
        plans = []
        for name in self.order:
            stage = self.project.stages[name]
            if name not in selected:
                plans.append(StagePlan(name, Action.NOT_SELECTED, ""))
                continue
            decision, _, _ = self._decide(stage, last_runs, existing, full_refresh, will_change)
            if decision.action != Action.SKIP:
                will_change.update(stage.outputs)
            plans.append(StagePlan(name, decision.action, decision.reason))
        if con is not None:
            con.close()
            self.code_graph.save()
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
        with build_lock(self.warehouse.root, catalog=self.warehouse.catalog):
            clear_scratch(self.warehouse.root)  # we hold the lock: no other build is running
            con = self.warehouse.connect()
            try:
                last_runs = self._last_runs(con)
                existing = table_names(con)
                self.damaged = damaged_tables(con, self.warehouse.data_dir)
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
                        result = StageResult(name, Status.BLOCKED, f"upstream {bad_up[0]} failed")
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
                    elif result.status == Status.FAILED:
                        failed.add(name)
                        not_committed.append(self._run_record(build_id, stage, result))
                unrecorded = None
                if not_committed:
                    unrecorded = self._record_failures(con, build_id, not_committed, results)
            finally:
                con.close()
                self.code_graph.save()
        return BuildResult(build_id, results, unrecorded)

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
        started_at = datetime.now(UTC)
        missing_inputs = [t for t in stage.inputs if t not in existing]
        try:
            decision, definition_fp, inputs = self._decide(
                stage, last_runs, existing, full_refresh, changed_upstream
            )
        except Exception as exc:  # a watch hook that cannot read its source
            result = StageResult(
                stage.name, Status.FAILED, error=f"stage {stage.name}: watch hook failed: {exc}"
            )
            self.reporter.stage_finished(result)
            return result
        if decision.action == Action.SKIP:
            result = StageResult(stage.name, Status.UP_TO_DATE, decision.reason)
            self.reporter.stage_finished(result)
            return result
        if missing_inputs:
            hint = f"build it first, e.g. --select +{stage.name}"
            result = StageResult(
                stage.name,
                Status.FAILED,
                decision.reason,
                error=f"stage {stage.name}: input table {missing_inputs[0]} has not been built "
                f"({hint})",
            )
            self.reporter.stage_finished(result)
            return result
        if decision.action == Action.INCREMENTAL and not incremental.can_run_incrementally(
            con, stage.name, decision.changed_sides
        ):
            decision = Decision(Action.BUILD, f"{decision.reason}; no row hashes recorded yet")
        plan = StagePlan(stage.name, decision.action, decision.reason, decision.changed_sides)
        self.reporter.stage_started(plan)
        run_id = f"{build_id}-{stage.name}"
        record_base = {
            "run_id": run_id,
            "fingerprint": run_fingerprint(definition_fp, inputs),
            "definition_fp": definition_fp,
            "inputs": json.dumps(inputs),
            "settings": json.dumps(self.settings[stage.name], default=str),
            "started_at": started_at,
        }
        try:
            n_rows, artifact_dir, checks = self._execute(
                con, build_id, run_id, stage, plan, last_runs, record_base, started
            )
        except StageFailure as failure:
            result = StageResult(
                stage.name,
                Status.FAILED,
                decision.reason,
                duration_s=time.perf_counter() - started,
                error=str(failure),
                detail=failure.detail,
                checks=failure.checks,
            )
            result.started_at = started_at
            self.reporter.stage_finished(result)
            return result
        status = Status.INCREMENTAL if plan.action == Action.INCREMENTAL else Status.BUILT
        snapshot = run_snapshots(con).get(run_id)
        last_runs[stage.name] = {**record_base, "stage": stage.name, "artifact_dir": artifact_dir}
        result = StageResult(
            stage.name,
            status,
            decision.reason,
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
        is_incremental = plan.action == Action.INCREMENTAL
        scratch = self._scratch_root() / run_id
        work_dir = published = None
        is_resume = False
        if stage.is_artifact:
            root = self.warehouse.root
            work_dir = artifacts.inprogress_dir(root, stage.name, record_base["fingerprint"])
            published = artifacts.published_dir(root, stage.name, run_id)
            is_resume = artifacts.open_inprogress(work_dir)
        try:
            if stage.kind == "sql":
                sources = {stage.name: ("sql", stage.sql)}
            else:
                scratch.mkdir(parents=True, exist_ok=True)
                value = self._call_python(con, stage, plan, last_runs, work_dir, scratch, is_resume)
                sources = self._normalise(stage, value, work_dir, published)
                if stage.spec and stage.spec.watch:
                    # Record the outside state as the stage left it (it may have created it,
                    # as the demo source loader does), so the next build sees no change.
                    inputs = {**json.loads(record_base["inputs"]), **self._inputs(stage, last_runs)}
                    record_base["inputs"] = json.dumps(inputs)
                    record_base["fingerprint"] = run_fingerprint(
                        record_base["definition_fp"], inputs
                    )
            message = f"{plan.action} {stage.name}"
            with transaction(con, message, {"run_id": run_id, "stage": stage.name}):
                n_rows = self._write_outputs(con, stage, sources, is_incremental)
                checks = self._run_checks(con, stage)
                failing = [c for c in checks if not c.passed and c.severity == "error"]
                if failing:
                    raise StageFailure(
                        f"stage {stage.name}: check failed: {failing[0].message}",
                        detail="; ".join(c.message for c in failing),
                        checks=checks,
                    )
                # The snapshot this commit will create: builds hold the warehouse's build lock,
                # so no other stage commits in between.
                next_snapshot = con.execute(
                    f"select max(snapshot_id) + 1 from {LAKE}.snapshots()"
                ).fetchone()[0]
                self._insert_run(
                    con,
                    {
                        **record_base,
                        "build_id": build_id,
                        "stage": stage.name,
                        "tables": list(stage.outputs),
                        "status": Status.INCREMENTAL if is_incremental else Status.BUILT,
                        "mode": str(plan.action),
                        "n_rows": n_rows,
                        "duration_s": time.perf_counter() - started,
                        "error": None,
                        "artifact_dir": str(published) if published else None,
                        "committed_snapshot": next_snapshot,
                        "committed_at": datetime.now(UTC),
                    },
                )
                self._record_checks(con, checks, next_snapshot)
                if work_dir is not None and published is not None:
                    # Published just before the commit; moved back if the commit fails.
                    work_dir.rename(published)
            return n_rows, str(published) if published else None, checks
        except StageFailure:
            _unpublish(work_dir, published)
            raise
        except Exception as exc:
            _unpublish(work_dir, published)
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
        plan: StagePlan,
        last_runs: dict[str, dict[str, Any]],
        artifact_dir: Path | None,
        scratch: Path,
        is_resume: bool,
    ) -> Any:
        spec = stage.spec
        assert spec is not None
        is_incremental = plan.action == Action.INCREMENTAL
        driver_sql = None
        if spec.incremental_key:
            assert spec.incremental_input is not None
            incremental.check_columns(
                con, stage.name, spec.incremental_input, spec.partitions, spec.compare
            )
            if is_incremental:
                driver_sql = incremental.prepare(
                    con,
                    stage.name,
                    spec.incremental_input,
                    spec.incremental_key,
                    spec.partitions,
                    plan.changed_sides,
                    spec.compare,
                )
        kwargs: dict[str, Any] = {}
        for table in spec.inputs:
            producer = self.project.stages[self.project.producers[table]]
            if producer.is_artifact and table == producer.name:
                kwargs[table] = Path(last_runs[producer.name]["artifact_dir"])
            elif table in spec.files:
                from cellstore.engine.files import table_files

                kwargs[table] = table_files(con, table)
            elif driver_sql is not None and table == spec.incremental_input:
                kwargs[table] = con.sql(driver_sql)
            else:
                kwargs[table] = con.table(table)
        kwargs.update(self.settings[stage.name])
        if spec.wants_ctx:
            (self.warehouse.root / "cache").mkdir(exist_ok=True)
            ctx = self._context(
                stage,
                artifact_dir=artifact_dir,
                scratch=scratch,
                incremental=is_incremental,
                is_resume=is_resume,
            )
            kwargs["ctx"] = ctx
        return spec.func(**kwargs)

    # ---- writing -----------------------------------------------------------------------
    def _normalise(
        self, stage: StageDef, value: Any, artifact_dir: Path | None, published: Path | None
    ) -> dict[str, tuple[str, Any]]:
        """Turn what a Python stage returned into {table: (kind, payload)}."""
        if value is None and stage.is_artifact and artifact_dir is not None:
            value = _artifact_manifest(artifact_dir, published or artifact_dir)
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
        is_incremental: bool,
    ) -> int:
        total = 0
        spec = stage.spec
        key = spec.incremental_key if spec else None
        for table, (kind, payload) in sources.items():
            view = f"__cellstore_{table}"
            if kind == "sql":
                select = payload
            elif kind == "parts":
                if payload:
                    files = ", ".join("'" + p.replace("'", "''") + "'" for p in payload)
                    select = f"select * from read_parquet([{files}], union_by_name = true)"
                elif is_incremental:
                    select = None  # nothing recomputed for this table
                else:
                    raise CellstoreError(
                        f"stage {stage.name} returned no Parquet parts for {table}"
                    )
            else:
                con.register(view, payload)
                select = f"select * from {view}"
            if is_incremental and key:
                assert spec is not None and spec.incremental_input is not None
                incremental.delete_stale(con, table, spec.incremental_input, key)
                count = (
                    con.execute(f"select count(*) from ({select})").fetchone()[0] if select else 0
                )
                if count:
                    con.execute(f"insert into {_quote(table)} by name {select}")
            else:
                con.execute(f"create or replace table {_quote(table)} as {select}")
                count = con.execute(f"select count(*) from {_quote(table)}").fetchone()[0]
            if kind == "frame":
                con.unregister(view)
            if table == stage.name:
                total = count  # an incremental run reports the rows it wrote
        if key:
            assert spec is not None and spec.incremental_input is not None
            incremental.record(
                con, stage.name, spec.incremental_input, key, spec.partitions, spec.compare
            )
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
            "status": str(result.status),
            "mode": None,
            "fingerprint": None,
            "definition_fp": None,
            "inputs": None,
            "settings": None,
            "n_rows": None,
            "duration_s": result.duration_s,
            "error": result.detail or result.error or result.reason,
            "artifact_dir": None,
            "started_at": result.started_at or datetime.now(UTC),
        }

    def _insert_run(self, con: duckdb.DuckDBPyConnection, record: dict[str, Any]) -> None:
        if not self._run_columns_checked:  # once per build, and never in a no-op build
            _ensure_run_columns(con)
            self._run_columns_checked = True
        columns = list(record)
        placeholders = ", ".join("?" for _ in columns)
        con.execute(
            f"insert into {META_SCHEMA}.runs ({', '.join(columns)}) values ({placeholders})",
            [str(v) if isinstance(v, Action | Status) else v for v in record.values()],
        )

    def _record_failures(
        self,
        con: duckdb.DuckDBPyConnection,
        build_id: str,
        records: list[dict[str, Any]],
        results: list[StageResult],
    ) -> str | None:
        """Failed and blocked runs are recorded too, in one metadata-only snapshot.

        Returns None, or why they could not be recorded (the build's error is what matters).
        """
        checks = [c for r in results if r.status == Status.FAILED for c in r.checks]
        for attempt in (1, 2):
            try:
                with transaction(con, "record failures", {"build_id": build_id}):
                    for record in records:
                        self._insert_run(con, record)
                    self._record_checks(con, checks, None)
                return None
            except duckdb.Error as exc:
                if attempt == 2:
                    return _first_line(exc)
                # Usually a full disk, filled by the failed stage's unreferenced files: we
                # hold the build lock, so no live transaction owns any of them.
                delete_orphaned_files(con)
        return None


def _ensure_run_columns(con: duckdb.DuckDBPyConnection) -> None:
    """Add run-record columns newer than the warehouse (one ALTER each, once)."""
    have = {
        r[0]
        for r in con.execute(
            "select column_name from duckdb_columns() where database_name = current_database() "
            f"and schema_name = '{META_SCHEMA}' and table_name = 'runs'"
        ).fetchall()
    }
    for column, kind in RUN_COLUMNS.items():
        if column not in have:
            con.execute(f"alter table {META_SCHEMA}.runs add column {column} {kind}")


def committed_runs(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    """{run_id: {snapshot_id, time}} as recorded in the run records at commit time: still
    known after `cellstore gc` expired the snapshots themselves."""
    columns = {
        r[0]
        for r in con.execute(
            "select column_name from duckdb_columns() where database_name = current_database() "
            f"and schema_name = '{META_SCHEMA}' and table_name = 'runs'"
        ).fetchall()
    }
    if not set(RUN_COLUMNS) <= columns:
        return {}
    rows = con.execute(
        f"select run_id, committed_snapshot, committed_at from {META_SCHEMA}.runs "
        "where committed_snapshot is not null"
    ).fetchall()
    return {r: {"snapshot_id": s, "time": t} for r, s, t in rows}


def _check_reads(project: Project) -> dict[str, set[str]]:
    """{stage: stages whose tables its outputs' contracts check against} (ordering only)."""
    from cellstore.engine.contracts import tables_checked_against

    after: dict[str, set[str]] = {}
    for name, stage in project.stages.items():
        for table in stage.outputs:
            for other in tables_checked_against(project.schema_dir, table):
                producer = project.producers.get(other)
                if producer and producer != name:
                    after.setdefault(name, set()).add(producer)
    return after


def _unpublish(work_dir: Path | None, published: Path | None) -> None:
    """Keep a failed run's artifact folder in progress, for the next run to resume."""
    if work_dir is not None and published is not None and published.is_dir():
        if not work_dir.exists():
            published.rename(work_dir)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line}" if not isinstance(exc, CellstoreError) else line


def _artifact_manifest(folder: Path, published: Path) -> Any:
    """One row per file an artifact stage wrote: path, bytes, sha256, and the folder the
    files are published in."""
    import pyarrow as pa

    rows = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        rows.append(
            {
                "path": str(path.relative_to(folder)),
                "bytes": path.stat().st_size,
                "sha256": digest,
                "artifact_dir": str(published),
            }
        )
    if not rows:
        raise CellstoreError(f"artifact stage wrote no files into {folder}")
    return pa.Table.from_pylist(rows)
