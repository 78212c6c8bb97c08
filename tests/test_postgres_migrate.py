"""`cellstore migrate`: a SQLite-catalogued warehouse, history included, onto Postgres."""

from __future__ import annotations

from conftest import ToyProject

from cellstore.engine.warehouse import Warehouse

TABLES = ("numbers", "doubled", "squares", "total")


def history(store: Warehouse) -> dict:
    """Every table at every snapshot, the snapshot list and the run records."""
    con = store.connect(read_only=True)
    try:
        snapshots = con.execute(
            "select snapshot_id, commit_message, commit_extra_info from snapshots() order by 1"
        ).fetchall()
        runs = con.execute(
            "select run_id, stage, status, fingerprint, n_rows, snapshot_id "
            "from cellstore_meta.stage_runs order by run_id"
        ).fetchall()
        checks_sql = "select count(*) from duckdb_tables() where table_name = 'check_results'"
        tables = {}
        for snapshot_id, *_ in snapshots:
            for table in TABLES:
                try:
                    rows = con.execute(
                        f"select * from {table} at (version => {snapshot_id}) order by all"
                    ).fetchall()
                except Exception as exc:  # the table did not exist yet at that snapshot
                    rows = type(exc).__name__
                tables[(table, snapshot_id)] = rows
        n_checks = con.execute(checks_sql).fetchone()[0]
    finally:
        con.close()
    return {"snapshots": snapshots, "runs": runs, "tables": tables, "checks": n_checks}


def test_migrate_copies_every_snapshot_and_keeps_building(postgres, toy: ToyProject, tmp_path):
    # A SQLite warehouse with history: three builds with different settings.
    for n in (5, 7, 3):
        toy.config(f"[stages.numbers]\nn = {n}\n")
        toy.cli("build", check=True)
    source = Warehouse(toy.warehouse_dir)
    before = history(source)
    assert len(before["snapshots"]) > 10 and len(before["runs"]) >= 12
    source_catalog = (toy.warehouse_dir / "catalog.sqlite").read_bytes()

    dsn = postgres.dsn(postgres.create_database())
    data = tmp_path / "shared-data"
    result = toy.cli("migrate", "--to", f"postgres:{dsn}", "--data-path", str(data))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "password=***" in result.stdout
    target = Warehouse(tmp_path / "elsewhere", f"postgres:{dsn}", f"{data}/")
    after = history(target)

    # Same snapshots (plus one recording the flush of inlined rows), same runs, same rows at
    # every snapshot; the source catalog is untouched.
    assert after["snapshots"][: len(before["snapshots"])] == before["snapshots"]
    assert len(after["snapshots"]) == len(before["snapshots"]) + 1
    assert after["runs"] == before["runs"]
    for key, rows in before["tables"].items():
        assert after["tables"][key] == rows, key
    assert (toy.warehouse_dir / "catalog.sqlite").read_bytes() == source_catalog

    # The migrated warehouse is a working one: a changed setting rebuilds on Postgres.
    toy.config(f'catalog = "postgres:{dsn}"\ndata_path = "{data}/"\n[stages.numbers]\nn = 4\n')
    rebuilt = toy.cli("build", "--warehouse", str(tmp_path / "elsewhere"), check=True)
    assert "built" in rebuilt.stdout
    con = target.connect(read_only=True)
    try:
        assert con.execute("select total from total").fetchone()[0] == 2 * (0 + 1 + 2 + 3)
    finally:
        con.close()


def test_migrate_refuses_a_used_catalog_and_a_non_empty_folder(postgres, toy, tmp_path):
    toy.cli("build", check=True)
    dsn = postgres.dsn(postgres.create_database())
    first = toy.cli("migrate", "--to", f"postgres:{dsn}", "--data-path", str(tmp_path / "d1"))
    assert first.returncode == 0, first.stderr
    again = toy.cli("migrate", "--to", f"postgres:{dsn}", "--data-path", str(tmp_path / "d2"))
    assert again.returncode == 1 and "already holds a DuckLake catalog" in again.stderr
    assert not (tmp_path / "d2").exists()
    other = postgres.dsn(postgres.create_database())
    busy = toy.cli("migrate", "--to", f"postgres:{other}", "--data-path", str(tmp_path / "d1"))
    assert busy.returncode == 1 and "is not empty" in busy.stderr


def test_migrate_to_an_unreachable_catalog_is_one_line(postgres, toy, tmp_path):
    toy.cli("build", check=True)
    dsn = postgres.dsn("lake", password="wrong")
    result = toy.cli("migrate", "--to", f"postgres:{dsn}", "--data-path", str(tmp_path / "d"))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1
    assert "password authentication failed" in lines[0] and "wrong" not in lines[0]
    assert not (tmp_path / "d").exists()
