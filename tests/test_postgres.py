"""The repository pipeline on a real PostgreSQL catalog, Parquet files in a separate folder.

A PostgreSQL server is started for the session (tests/postgres_support.py); `cellstore`
runs as a separate process, as a user would run it: build, no-op rebuild, time travel,
`sql` while a build writes, `check`, `export`, `gc`; then unreachable catalogs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import PIPELINE_SETTINGS, REPO

from cellstore.engine.project import load_project
from cellstore.engine.warehouse import Warehouse, load_postgres_extension, offline_connection
from cellstore.synth import generate

PLATES = ["Week1_22123", "Week2_24121"]


def cellstore(*args: str, config: Path, warehouse: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cellstore", *args]
        + ["--config", str(config), "--warehouse", str(warehouse)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def write_config(path: Path, dsn: str, data_path: Path | None = None) -> Path:
    lines = [f'catalog = "postgres:{dsn}"']
    if data_path is not None:
        lines.append(f'data_path = "{data_path}/"')
    path.write_text("\n".join(lines) + "\n\n" + PIPELINE_SETTINGS)
    return path


class Lake:
    """One Postgres-catalogued warehouse: its config, folders and helpers."""

    def __init__(self, root: Path, dsn: str, source: Path):
        self.root, self.dsn, self.source = root, dsn, source
        self.data = root / "shared-data"
        self.warehouse = root / "warehouse"
        self.config = write_config(root / "cellstore.toml", dsn, self.data)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return cellstore(*args, config=self.config, warehouse=self.warehouse)

    def build(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("build", "--source", str(self.source), "--scheduler", "inline", *args)

    def store(self) -> Warehouse:
        return Warehouse(self.warehouse, f"postgres:{self.dsn}", f"{self.data}/")

    def query(self, sql: str, at: int | None = None) -> list[tuple]:
        con = self.store().connect(read_only=True, snapshot=at)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def n_snapshots(self) -> int:
        return self.query("select count(*) from snapshots()")[0][0]


@pytest.fixture(scope="module")
def lake(postgres, tmp_path_factory) -> Lake:
    root = tmp_path_factory.mktemp("pg_pipeline")
    source = root / "source"
    generate(source, plates=PLATES, sites=1, scale=0.5, seed=0, wells="annotated")
    lake = Lake(root, postgres.dsn(postgres.create_database()), source)
    lake.first = lake.build()
    return lake


def test_build_keeps_the_catalog_in_postgres_and_the_files_in_the_data_folder(lake):
    assert lake.first.returncode == 0, lake.first.stdout + lake.first.stderr
    n_stages = len(load_project(REPO).stages)
    assert f"{n_stages} built" in lake.first.stdout
    # No catalog file anywhere near the warehouse folder; Parquet only under the data folder.
    assert not list(lake.root.rglob("catalog.*"))
    parquet = list(lake.data.rglob("*.parquet"))
    assert parquet and not list(lake.warehouse.rglob("*.parquet"))
    # The catalog rows are in Postgres itself (read with the postgres extension, no DuckLake).
    con = offline_connection()
    load_postgres_extension(con)
    con.execute(f"attach '{lake.dsn}' as pg (type postgres, read_only)")
    n_pg, data_path = con.execute(
        "select (select count(*) from pg.public.ducklake_snapshot), "
        "(select value from pg.public.ducklake_metadata where key = 'data_path')"
    ).fetchone()
    con.close()
    assert n_pg == lake.n_snapshots() >= 14
    assert data_path == f"{lake.data}/"
    n_nuclei, n_features, plates = lake.query(
        "select (select count(*) from nuclei), (select count(*) from cell_features), "
        "(select count(distinct plate) from images)"
    )[0]
    assert n_nuclei > 1000 and n_features == n_nuclei and plates == 2
    nsc = lake.query("select min(nsc), max(nsc), count(*) from moa_accuracy")[0]
    assert 0 <= nsc[0] <= nsc[1] <= 1 and nsc[2] >= 6


def test_second_build_is_a_no_op(lake):
    before = lake.n_snapshots()
    again = lake.build()
    assert again.returncode == 0, again.stderr
    assert f"{len(load_project(REPO).stages)} up to date" in again.stdout
    assert lake.n_snapshots() == before


def test_time_travel_through_postgres_snapshots(lake):
    runs = dict(
        lake.query("select stage, snapshot_id from cellstore_meta.stage_runs where status='built'")
    )
    images_at = runs["images"]
    # Before the images stage committed, the table did not exist; at its commit it did.
    early = lake.run("sql", "select count(*) from images", "--at", str(images_at - 1))
    assert early.returncode == 1 and "does not exist" in early.stderr
    at = lake.run("sql", "select count(*) as n from images", "--at", str(images_at), "-f", "json")
    assert at.returncode == 0, at.stderr
    assert json.loads(at.stdout) == [{"n": lake.query("select count(*) from images")[0][0]}]
    # moa_accuracy did not exist yet when cell_features was committed.
    assert lake.query(
        "select count(*) from duckdb_tables() where table_name = 'moa_accuracy'",
        at=runs["cell_features"],
    ) == [(0,)]


def test_sql_reads_committed_snapshots_while_a_build_writes(lake):
    """A reader process sees the last committed snapshot during a build, then the new one."""
    count_sql = (
        "select (select count(*) from cell_features) as n, "
        "(select max(snapshot_id) from snapshots()) as s"
    )
    n_cells = lake.query("select count(*) from cell_features")[0][0]
    before = lake.n_snapshots()
    cmd = [sys.executable, "-m", "cellstore", "build", "--select", "cell_features"]
    cmd += ["--full-refresh", "--source", str(lake.source), "--scheduler", "inline"]
    cmd += ["--config", str(lake.config), "--warehouse", str(lake.warehouse)]
    writer = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen_during = []
    try:
        deadline = time.monotonic() + 300
        while writer.poll() is None and time.monotonic() < deadline:
            read = lake.run("sql", count_sql, "-f", "json")
            if writer.poll() is None:
                assert read.returncode == 0, read.stderr
                seen_during.append(json.loads(read.stdout)[0])
        out, err = writer.communicate(timeout=300)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=30)
    assert writer.returncode == 0, out + err
    assert seen_during, "the build ended before a reader could run"
    # Every read during the build: all cells of a committed version, the old snapshot or
    # (between the commit and the writer's exit) the new one, never a half-written table.
    assert all(r["n"] == n_cells and r["s"] in (before - 1, before) for r in seen_during)
    assert seen_during[0]["s"] == before - 1, seen_during
    assert lake.n_snapshots() == before + 1
    assert lake.query("select count(*) from cell_features")[0][0] == n_cells


def test_check_passes_on_the_postgres_warehouse(lake):
    check = lake.run("check", "--format", "json")
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr
    results = [json.loads(line) for line in check.stdout.splitlines() if line.strip()]
    assert len(results) > 100
    assert not [r for r in results if r["severity"] == "error" and not r["passed"]]


def test_export_reads_from_postgres(lake, tmp_path):
    out = tmp_path / "profiles.parquet"
    result = lake.run(
        "export", "treatment_profiles", "--out", str(out),
        "--feature-source", "handcrafted", "--postprocessing", "tvn",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pq.read_table(out)
    expected = lake.query(
        "select count(*) from treatment_profiles "
        "where feature_source = 'handcrafted' and postprocessing = 'tvn'"
    )[0][0]
    assert table.num_rows == expected > 0
    assert {"Metadata_Compound", "Metadata_MoA"} <= set(table.column_names)


def test_gc_deletes_only_orphaned_files(lake):
    some_file = next(lake.data.rglob("*.parquet"))
    orphan = some_file.with_name("ducklake-orphan-left-by-a-killed-build.parquet")
    shutil.copy(some_file, orphan)
    tables = lake.query("select count(*) from nuclei")
    dry = lake.run("gc", "--dry-run")
    assert dry.returncode == 0 and "orphaned files to delete: 1" in dry.stdout, dry.stdout
    assert orphan.exists()
    gc = lake.run("gc")
    assert gc.returncode == 0 and "orphaned files deleted: 1" in gc.stdout, gc.stdout + gc.stderr
    assert not orphan.exists() and some_file.exists()
    assert lake.query("select count(*) from nuclei") == tables
    assert lake.build().returncode == 0  # still a consistent, up-to-date warehouse


# ---- unreachable or refused catalogs --------------------------------------------------------


@pytest.mark.parametrize(
    "case, expected",
    [
        ("wrong port", "Connection refused"),
        ("wrong host", "Connection refused"),
        ("refused password", "password authentication failed"),
        ("missing database", "does not exist"),
    ],
)
def test_unreachable_catalog_is_one_line_and_writes_nothing(postgres, tmp_path, case, expected):
    from postgres_support import free_port

    database = postgres.create_database()
    dsn = {
        "wrong port": postgres.dsn(database, port=free_port()),
        "wrong host": postgres.dsn(database).replace("127.0.0.1", "127.0.0.2"),
        "refused password": postgres.dsn(database, password="not-the-password"),
        "missing database": postgres.dsn("no_such_database"),
    }[case]
    config = write_config(tmp_path / "cellstore.toml", dsn, tmp_path / "data")
    warehouse = tmp_path / "warehouse"
    for args in (["build", "--select", "moa"], ["sql", "select 1"], ["ls"]):
        result = cellstore(*args, config=config, warehouse=warehouse)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert len(lines) == 1 and "postgres catalog" in lines[0] and expected in lines[0], lines
        assert "not-the-password" not in result.stderr and "Traceback" not in result.stderr
    assert not warehouse.exists() and not (tmp_path / "data").exists()
    if case != "missing database":  # the real database is still empty
        con = offline_connection()
        load_postgres_extension(con)
        con.execute(f"attach '{postgres.dsn(database)}' as pg (type postgres, read_only)")
        assert con.execute(
            "select count(*) from information_schema.tables where table_catalog = 'pg' "
            "and table_name like 'ducklake%'"
        ).fetchone() == (0,)
        con.close()


def test_reading_an_empty_postgres_catalog_says_build_first(postgres, tmp_path):
    config = write_config(tmp_path / "cellstore.toml", postgres.dsn(postgres.create_database()))
    result = cellstore("ls", config=config, warehouse=tmp_path / "warehouse")
    assert result.returncode == 1
    assert "holds no cellstore warehouse: run `cellstore build` first" in result.stderr


def test_warehouse_label_masks_the_password():
    store = Warehouse(Path("/tmp/w"), "postgres:dbname=x host=h password=s3cret user=u")
    assert "s3cret" not in store.label and "password=***" in store.label
