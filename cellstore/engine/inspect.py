"""Read-side views of a warehouse: tables, run history, the DAG, garbage collection."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from cellstore.engine.artifacts import gc_artifacts
from cellstore.engine.project import Project
from cellstore.engine.runner import committed_runs
from cellstore.engine.warehouse import (
    LAKE,
    META_SCHEMA,
    Warehouse,
    delete_orphaned_files,
    has_metadata,
    snapshots,
    table_names,
)
from cellstore.errors import CellstoreError


def _runs(con, where: str = "", params: list | None = None) -> list[dict]:
    if not has_metadata(con):  # a bare catalog: nothing was ever built into it
        return []
    rows = con.execute(
        f"select run_id, stage, tables, status, mode, n_rows, duration_s, started_at, error "
        f"from {META_SCHEMA}.runs {where} order by started_at",
        params or [],
    ).fetchall()
    keys = (
        "run_id",
        "stage",
        "tables",
        "status",
        "mode",
        "n_rows",
        "duration_s",
        "started_at",
        "error",
    )
    return [dict(zip(keys, r, strict=True)) for r in rows]


def print_tables(console: Console, warehouse: Warehouse) -> None:
    con = warehouse.connect(read_only=True)
    by_run = {s.get("run_id"): s for s in snapshots(con) if s.get("run_id")}
    for run_id, commit in committed_runs(con).items():
        by_run.setdefault(run_id, commit)  # runs whose snapshot gc expired
    writer: dict[str, dict] = {}
    for run in _runs(con, "where status in ('built', 'incremental')"):
        for table in run["tables"] or []:
            writer[table] = run
    table = Table("table", "rows", "snapshot", "built at", "stage")
    for name in sorted(table_names(con)):
        n = con.execute(f'select count(*) from "{name}"').fetchone()[0]
        run = writer.get(name)
        snap = by_run.get(run["run_id"]) if run else None
        table.add_row(
            name,
            f"{n:,}",
            str(snap["snapshot_id"]) if snap else "-",
            snap["time"].strftime("%Y-%m-%d %H:%M:%S") if snap else "-",
            run["stage"] if run else "-",
        )
    console.print(table)


def print_history(console: Console, warehouse: Warehouse, name: str) -> None:
    con = warehouse.connect(read_only=True)
    by_run = {s.get("run_id"): s for s in snapshots(con) if s.get("run_id")}
    runs = _runs(con, "where stage = ? or list_contains(tables, ?)", [name, name])
    if not runs:
        raise CellstoreError(f"no runs recorded for table or stage {name!r}")
    table = Table(
        "snapshot",
        "started",
        "stage",
        "status",
        "mode",
        "rows",
        "seconds",
        "error",
        title=f"history of {name}",
        title_justify="left",
    )
    for run in runs:
        snap = by_run.get(run["run_id"])
        error = (run["error"] or "").strip().splitlines()
        table.add_row(
            str(snap["snapshot_id"]) if snap else "-",
            run["started_at"].strftime("%Y-%m-%d %H:%M:%S"),
            run["stage"],
            run["status"],
            run["mode"] or "-",
            f"{run['n_rows']:,}" if run["n_rows"] is not None else "-",
            f"{run['duration_s']:.2f}" if run["duration_s"] is not None else "-",
            error[-1][:80] if error else "",
        )
    console.print(table)
    console.print(
        f'[dim]query an old version: cellstore sql "select * from {name}" --at SNAPSHOT[/]'
    )


def print_dag(console: Console, project: Project) -> None:
    from cellstore.engine.dag import topological_order

    table = Table("#", "stage", "kind", "reads", "writes", "file")
    for i, name in enumerate(topological_order(project), 1):
        stage = project.stages[name]
        table.add_row(
            str(i),
            name,
            stage.describe(),
            ", ".join(stage.inputs) or "-",
            ", ".join(stage.outputs),
            str(stage.path.relative_to(project.root)),
        )
    console.print(table)


def collect_garbage(
    console: Console,
    warehouse: Warehouse,
    older_than_days: float,
    dry_run: bool,
    wait: float = 0,
) -> None:
    """Expire old snapshots (if asked), delete files no snapshot references and the scratch
    of builds that are no longer running.

    Holds the build lock throughout: a running build's open transaction has written files
    no snapshot references *yet*, and deleting them would make its commit publish a table
    whose file is gone. With a build running, gc waits up to `wait` seconds, then refuses.
    """
    from cellstore.engine.lock import build_lock
    from cellstore.engine.scratch import clear_scratch

    warehouse.require()

    def waiting(who: str) -> None:
        by = f" ({who})" if who else ""
        console.print(f"a build is running on {warehouse.root}{by}: waiting up to {wait:g} s")

    with build_lock(warehouse.root, wait, action="gc", on_wait=waiting, catalog=warehouse.catalog):
        con = warehouse.connect()
        try:
            _delete_unreferenced(console, warehouse, con, older_than_days, dry_run)
        finally:
            con.close()
        n, size = clear_scratch(warehouse.root, dry_run)
        verb = "to delete" if dry_run else "deleted"
        console.print(f"scratch of finished builds {verb}: {n} ({size / 2**20:.1f} MiB)")


def _delete_unreferenced(
    console: Console, warehouse: Warehouse, con, older_than_days: float, dry_run: bool
) -> None:
    dry = "true" if dry_run else "false"
    if older_than_days >= 0:
        expired = con.execute(
            f"call ducklake_expire_snapshots('{LAKE}', dry_run => {dry}, "
            f"older_than => now() - interval '{float(older_than_days) * 86400} seconds')"
        ).fetchall()
        console.print(f"expired snapshots: {len(expired)}")
        cleaned = con.execute(
            f"call ducklake_cleanup_old_files('{LAKE}', dry_run => {dry}, cleanup_all => true)"
        ).fetchall()
        console.print(
            f"files of expired snapshots {'to delete' if dry_run else 'deleted'}: {len(cleaned)}"
        )
    gc_artifacts(console, warehouse, dry_run, con=con)  # after expiry: versions it freed
    orphans = delete_orphaned_files(con, dry_run)
    console.print(f"orphaned files {'to delete' if dry_run else 'deleted'}: {len(orphans)}")
    for path in orphans[:10]:
        console.print(f"  [dim]{path}[/]", highlight=False)
