"""Artifact folders: in progress per fingerprint (kept across failures), published per run.

Layout under `<warehouse>/artifacts/<stage>/`: `inprogress-<fingerprint>/` while a run of
that fingerprint works (and after it failed or was killed, for the next run to resume),
`<run_id>/` once the run committed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb

from cellstore.engine.warehouse import LAKE, META_SCHEMA

INPROGRESS = "inprogress-"


def artifacts_root(warehouse_root: Path) -> Path:
    return warehouse_root / "artifacts"


def inprogress_dir(warehouse_root: Path, stage: str, fingerprint: str) -> Path:
    return artifacts_root(warehouse_root) / stage / f"{INPROGRESS}{fingerprint}"


def published_dir(warehouse_root: Path, stage: str, run_id: str) -> Path:
    return artifacts_root(warehouse_root) / stage / run_id


def open_inprogress(folder: Path) -> bool:
    """Create the folder if needed; True when a previous run left files in it (a resume)."""
    resume = folder.is_dir() and any(folder.iterdir())
    folder.mkdir(parents=True, exist_ok=True)
    return resume


def referenced_runs(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """(stage, run folder name) of every artifact some live snapshot or current table uses:
    the latest successful run of each stage, and runs whose commit snapshot still exists."""
    rows = con.execute(
        f"""
        with built as (
            select stage, run_id, artifact_dir, started_at,
                   row_number() over (partition by stage order by started_at desc) as age
            from {META_SCHEMA}.runs
            where status in ('built', 'incremental') and artifact_dir is not null
        ),
        live as (select commit_extra_info->>'run_id' as run_id from {LAKE}.snapshots())
        select stage, artifact_dir from built
        where age = 1 or run_id in (select run_id from live)
        """
    ).fetchall()
    return {(stage, Path(folder).name) for stage, folder in rows}


def collect_artifacts(
    con: duckdb.DuckDBPyConnection,
    warehouse_root: Path,
    current: dict[str, str] | None,
    dry_run: bool,
    say: Callable[[str], None],
) -> list[Path]:
    """Delete in-progress folders of fingerprints that are no longer current and published
    versions nothing references. `current`: {stage: fingerprint its next run would have};
    None (the project could not be loaded) keeps every in-progress folder."""
    root = artifacts_root(warehouse_root)
    if not root.is_dir():
        return []
    keep = referenced_runs(con)
    doomed: list[Path] = []
    for stage_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for folder in sorted(p for p in stage_dir.iterdir() if p.is_dir()):
            if folder.name.startswith(INPROGRESS):
                fingerprint = folder.name.removeprefix(INPROGRESS)
                if current is not None and current.get(stage_dir.name) != fingerprint:
                    doomed.append(folder)
            elif (stage_dir.name, folder.name) not in keep:
                doomed.append(folder)
    if not dry_run:
        for folder in doomed:
            shutil.rmtree(folder, ignore_errors=True)
    verb = "to delete" if dry_run else "deleted"
    say(f"artifact folders {verb}: {len(doomed)}")
    if current is None:
        say("  (in-progress artifact folders kept: run gc in the project folder to judge them)")
    for folder in doomed[:10]:
        say(f"  {folder}")
    return doomed


def gc_artifacts(
    console, warehouse, dry_run: bool, project: Path = Path("."), con=None
) -> list[Path]:
    """`cellstore gc`'s artifact step: current fingerprints from the project in `project`
    (the working folder by default); `con` an open write connection to reuse."""
    from cellstore.errors import CellstoreError

    current: dict[str, str] | None
    try:
        from cellstore.engine.config import load_config
        from cellstore.engine.project import load_project
        from cellstore.engine.runner import Runner

        config = load_config(project)
        runner = Runner(load_project(project), config, warehouse)
        current = runner.current_fingerprints()
    except CellstoreError:
        current = None
    own = con is None
    con = con or warehouse.connect()
    try:
        return collect_artifacts(
            con,
            warehouse.root,
            current,
            dry_run,
            lambda text: console.print(text, highlight=False),
        )
    finally:
        if own:
            con.close()
