"""Checks against planted defects: each kind is found, reported with samples, by severity."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cellstore.checks import RESULTS_TABLE, CheckResult, record_check_results, run_table_checks
from cellstore.engine.warehouse import Warehouse

CROPS = """\
table: crops
description: One crop per nucleus (test contract).
grain: [image_id, nucleus_id]
columns:
  - {name: image_id, type: VARCHAR, role: key}
  - {name: nucleus_id, type: INTEGER, role: key}
  - name: concentration
    type: DOUBLE
    role: meta
    checks: [finite, {range: {min: 0, max: 100}}]
  - name: moa
    type: VARCHAR
    role: label
    checks: [{accepted_values: {values: [Actin disruptors, DMSO], severity: warn}}]
  - name: well
    type: VARCHAR
    role: meta
    checks: [{match: {regex: "^[A-P][0-9]{2}$"}}]
  - name: embedding
    type: FLOAT[]
    role: feature
    checks: [{vector: {dim: 3}}]
checks:
  - row_count: {min: 1}
  - relationship: {columns: [image_id], to: images}
  - sql:
      name: nucleus_id_small
      query: select image_id, nucleus_id from crops where nucleus_id > 1000
"""


def clean_crops(n: int = 6) -> pa.Table:
    return pa.table(
        {
            "image_id": [f"img{i % 3}" for i in range(n)],
            "nucleus_id": pa.array(range(n), pa.int32()),
            "concentration": [float(i) for i in range(n)],
            "moa": ["DMSO" if i % 2 else "Actin disruptors" for i in range(n)],
            "well": [f"B{i + 2:02d}" for i in range(n)],
            "embedding": pa.array([[1.0, float(i), 0.5] for i in range(n)], pa.list_(pa.float32())),
        }
    )


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "crops.yml").write_text(CROPS)
    return folder


def load(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table | pd.DataFrame) -> None:
    """(Re)create `table` on `con` from Arrow or pandas data."""
    con.register("input_data", data)
    con.execute(f"create or replace table {table} as select * from input_data")
    con.unregister("input_data")


def connect_with(crops: pa.Table | pd.DataFrame) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("create table images as select 'img' || range as image_id from range(3)")
    load(con, "crops", crops)
    return con


def by_check(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.check: r for r in results}


def failing(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.check: r for r in results if not r.passed}


def with_row(table: pa.Table, **changes) -> pa.Table:
    """`table` plus one row: a copy of its first row with `changes` applied."""
    row = {name: table.column(name)[0].as_py() for name in table.column_names}
    row.update(changes)
    extra = pa.Table.from_pylist([row], schema=table.schema)
    return pa.concat_tables([table, extra])


def test_clean_table_passes_every_check(schemas):
    results = run_table_checks(connect_with(clean_crops()), "crops", schemas)
    assert all(r.passed for r in results), [r.message for r in results if not r.passed]
    assert [r.check for r in results] == [
        "schema",
        "not_null(image_id)",
        "not_null(nucleus_id)",
        "unique(image_id, nucleus_id)",
        "finite(concentration)",
        "range(concentration, min=0, max=100)",
        "accepted_values(moa)",
        "match(well, ^[A-P][0-9]{2}$)",
        "finite(embedding)",
        "nonzero_norm(embedding)",
        "vector_dim(embedding, 3)",
        "row_count(min=1)",
        "relationship(image_id -> images)",
        "sql(nucleus_id_small)",
    ]


def test_null_key_is_blocked_and_reported(schemas):
    results = run_table_checks(
        connect_with(with_row(clean_crops(), image_id=None)), "crops", schemas
    )
    failed = failing(results)
    assert set(failed) == {"not_null(image_id)"}
    result = failed["not_null(image_id)"]
    assert result.blocking and result.n_failing == 1
    assert json.loads(result.sample) == [{"nucleus_id": 0, "image_id": None}]
    assert result.message.startswith("crops: not_null(image_id) failed (error): 1 row(s)")


def test_duplicate_compound_key_is_blocked(schemas):
    crops = with_row(with_row(clean_crops(), concentration=1.5), concentration=2.5)
    result = failing(run_table_checks(connect_with(crops), "crops", schemas))
    assert set(result) == {"unique(image_id, nucleus_id)"}
    dup = result["unique(image_id, nucleus_id)"]
    assert dup.blocking and dup.n_failing == 1  # one key value, three rows
    assert json.loads(dup.sample) == [{"image_id": "img0", "nucleus_id": 0, "n_rows": 3}]


def test_out_of_range_concentration_is_blocked_with_its_row(schemas):
    crops = with_row(clean_crops(), nucleus_id=77, concentration=250.0)
    failed = failing(run_table_checks(connect_with(crops), "crops", schemas))
    assert set(failed) == {"range(concentration, min=0, max=100)"}
    result = failed["range(concentration, min=0, max=100)"]
    assert result.blocking and result.n_failing == 1
    assert json.loads(result.sample) == [
        {"image_id": "img0", "nucleus_id": 77, "concentration": 250.0}
    ]
    assert "outside [0, 100]" in result.message


def test_nan_concentration_fails_finite_not_range(schemas):
    crops = with_row(clean_crops(), nucleus_id=77, concentration=float("nan"))
    failed = failing(run_table_checks(connect_with(crops), "crops", schemas))
    assert set(failed) == {"finite(concentration)"}
    assert json.loads(failed["finite(concentration)"].sample)[0]["concentration"] == "nan"


@pytest.mark.parametrize(
    ("vector", "check"),
    [
        ([1.0, float("nan"), 2.0], "finite(embedding)"),
        ([1.0, float("inf"), 2.0], "finite(embedding)"),
        ([1.0, None, 2.0], "finite(embedding)"),
        ([0.0, 0.0, 0.0], "nonzero_norm(embedding)"),
        ([0.0, 0.0, 0.0, 0.0], "nonzero_norm(embedding)"),  # and the wrong length
        ([1.0, 2.0], "vector_dim(embedding, 3)"),
    ],
)
def test_bad_vectors_are_blocked(schemas, vector, check):
    crops = with_row(clean_crops(), nucleus_id=77, embedding=vector)
    failed = failing(run_table_checks(connect_with(crops), "crops", schemas))
    assert check in failed
    assert failed[check].blocking and failed[check].n_failing == 1
    assert json.loads(failed[check].sample)[0]["nucleus_id"] == 77


def test_empty_vector_has_zero_norm(schemas):
    crops = with_row(clean_crops(), nucleus_id=77, embedding=[])
    failed = failing(run_table_checks(connect_with(crops), "crops", schemas))
    assert {"nonzero_norm(embedding)", "vector_dim(embedding, 3)"} <= set(failed)


def test_empty_table_fails_row_count(schemas):
    failed = failing(run_table_checks(connect_with(clean_crops().slice(0, 0)), "crops", schemas))
    assert set(failed) == {"row_count(min=1)"}
    assert "has 0 rows, expected at least 1" in failed["row_count(min=1)"].message


def test_orphan_crop_fails_relationship(schemas):
    crops = with_row(clean_crops(), image_id="img9", nucleus_id=5)
    failed = failing(run_table_checks(connect_with(crops), "crops", schemas))
    assert set(failed) == {"relationship(image_id -> images)"}
    orphan = failed["relationship(image_id -> images)"]
    assert orphan.n_failing == 1
    assert json.loads(orphan.sample) == [{"nucleus_id": 5, "image_id": "img9"}]


def test_wrong_type_is_drift_naming_the_column(schemas):
    crops = clean_crops()
    crops = crops.set_column(1, "nucleus_id", crops.column("nucleus_id").cast(pa.int64()))
    results = run_table_checks(connect_with(crops), "crops", schemas)
    failed = failing(results)
    assert set(failed) == {"schema.type(nucleus_id)"}
    assert "nucleus_id is BIGINT, declared INTEGER" in failed["schema.type(nucleus_id)"].message
    # Checks on the mistyped column are skipped, not run against the wrong type.
    assert "not_null(nucleus_id)" not in by_check(results)


def test_missing_and_extra_columns_are_drift(schemas):
    crops = clean_crops().drop(["moa"]).append_column("surprise", pa.array([1] * 6))
    failed = failing(run_table_checks(connect_with(crops), "crops", schemas))
    assert set(failed) == {"schema.missing_column(moa)", "schema.extra_column(surprise)"}
    assert all(r.blocking for r in failed.values())
    assert (
        "declared column moa (VARCHAR) is missing" in failed["schema.missing_column(moa)"].message
    )
    assert "surprise (BIGINT) is not declared in crops.yml" in (
        failed["schema.extra_column(surprise)"].message
    )


def test_warn_severity_is_reported_without_blocking(schemas):
    crops = with_row(clean_crops(), nucleus_id=77, moa="Unknown")
    failed = failing(run_table_checks(connect_with(crops), "crops", schemas))
    assert set(failed) == {"accepted_values(moa)"}
    warned = failed["accepted_values(moa)"]
    assert warned.severity == "warn" and not warned.blocking
    assert json.loads(warned.sample) == [{"image_id": "img0", "nucleus_id": 77, "moa": "Unknown"}]


def test_match_check_reports_bad_wells(schemas):
    crops = with_row(clean_crops(), nucleus_id=77, well="Z1")
    failed = failing(run_table_checks(connect_with(crops), "crops", schemas))
    assert set(failed) == {"match(well, ^[A-P][0-9]{2}$)"}


def test_free_sql_check_returns_offending_rows(schemas):
    crops = with_row(clean_crops(), nucleus_id=5000)
    failed = failing(run_table_checks(connect_with(crops), "crops", schemas))
    assert set(failed) == {"sql(nucleus_id_small)"}
    assert json.loads(failed["sql(nucleus_id_small)"].sample) == [
        {"image_id": "img0", "nucleus_id": 5000}
    ]


def test_table_without_contract_is_one_warning(tmp_path):
    results = run_table_checks(connect_with(clean_crops()), "crops", tmp_path)
    assert len(results) == 1
    assert results[0].severity == "warn" and not results[0].passed
    assert "no contract" in results[0].message


def test_invalid_contract_and_missing_table_are_errors(schemas):
    (schemas / "images.yml").write_text("table: images\ncolumns: [{name: image_id}]\n")
    (schemas / "nuclei.yml").write_text(
        "table: nuclei\ncolumns: [{name: x, type: INT, role: meta}]"
    )
    con = connect_with(clean_crops())
    [invalid] = run_table_checks(con, "images", schemas)
    assert invalid.blocking and "'type' is required" in invalid.message
    [missing] = run_table_checks(con, "nuclei", schemas)
    assert missing.blocking and "table nuclei does not exist" in missing.message


def test_relationship_where_lets_dmso_through(tmp_path):
    (tmp_path / "treatment_profiles.yml").write_text(
        textwrap.dedent(
            """\
            table: treatment_profiles
            columns:
              - {name: compound, type: VARCHAR, role: key}
              - {name: concentration, type: DOUBLE, role: key}
            checks:
              - relationship:
                  columns: [compound, concentration]
                  to: moa
                  where: "compound <> 'DMSO'"
            """
        )
    )
    con = duckdb.connect()
    con.execute("create table moa as select 'taxol' as compound, 0.3::double as concentration")
    con.execute(
        "create table treatment_profiles as select compound, concentration::double as "
        "concentration from (values ('taxol', 0.3), ('DMSO', 0.0), ('taxol', 1.0), "
        "('mystery', 0.3)) t(compound, concentration)"
    )
    [schema, relationship] = run_table_checks(con, "treatment_profiles", tmp_path)
    assert schema.passed and relationship.n_failing == 2
    assert json.loads(relationship.sample) == [
        {"compound": "mystery", "concentration": 0.3},
        {"compound": "taxol", "concentration": 1.0},
    ]


def test_wide_feature_group_finds_nan_and_zero_rows(tmp_path):
    (tmp_path / "profiles.yml").write_text(
        textwrap.dedent(
            """\
            table: profiles
            grain: well
            columns:
              - {name: well, type: VARCHAR, role: key}
            column_groups:
              - {pattern: "^Cells_", type: DOUBLE, role: feature, min_columns: 3, checks: [vector]}
            """
        )
    )
    frame = pd.DataFrame(
        {
            "well": ["A01", "A02", "A03", "A04"],
            "Cells_a": [1.0, 0.0, np.nan, 0.0],
            "Cells_b": [2.0, 0.0, 1.0, np.inf],
            "Cells_c": [3.0, 0.0, 1.0, 1.0],
        }
    )
    con = duckdb.connect()
    load(con, "profiles", frame)
    failed = failing(run_table_checks(con, "profiles", tmp_path))
    assert set(failed) == {"finite(/^Cells_/)", "nonzero_norm(/^Cells_/)"}
    assert json.loads(failed["finite(/^Cells_/)"].sample) == [
        {"well": "A03", "n_nonfinite_columns": 1},
        {"well": "A04", "n_nonfinite_columns": 1},
    ]
    assert json.loads(failed["nonzero_norm(/^Cells_/)"].sample) == [{"well": "A02", "n_columns": 3}]
    # A group with too few columns, or a mistyped member, is drift.
    con.execute(
        "create or replace table profiles as select well, Cells_a::float as Cells_a from profiles"
    )
    failed = failing(run_table_checks(con, "profiles", tmp_path))
    assert {"schema.type(/^Cells_/)", "schema.group(/^Cells_/)"} <= set(failed)
    assert "Cells_a (FLOAT)" in failed["schema.type(/^Cells_/)"].message


def test_row_accounting_by_count_and_by_key(tmp_path):
    (tmp_path / "crops.yml").write_text(
        textwrap.dedent(
            """\
            table: crops
            columns:
              - {name: nucleus_id, type: BIGINT, role: key}
            checks:
              - row_accounting: {input: nuclei, rejected: crops_rejected}
              - row_accounting: {input_query: "select * from nuclei", rejected: crops_rejected,
                                 key: nucleus_id}
            """
        )
    )
    con = duckdb.connect()
    con.execute("create table nuclei as select range as nucleus_id from range(10)")
    con.execute("create table crops as select range as nucleus_id from range(7)")
    con.execute("create table crops_rejected as select range as nucleus_id from range(7, 10)")
    assert all(r.passed for r in run_table_checks(con, "crops", tmp_path))
    # Nucleus 8 vanishes: it is neither a crop nor a rejected crop.
    con.execute("delete from crops_rejected where nucleus_id = 8")
    failed = failing(run_table_checks(con, "crops", tmp_path))
    by_count = failed["row_accounting(nuclei = <this> + crops_rejected)"]
    assert by_count.n_failing == 1
    assert json.loads(by_count.sample) == [{"input": 10, "accepted": 7, "rejected": 2}]
    by_key = failed["row_accounting(input_query = <this> + crops_rejected)"]
    assert json.loads(by_key.sample) == [
        {"nucleus_id": 8, "n_input": 1, "n_accepted": 0, "n_rejected": 0}
    ]


GX_TABLE = """\
table: measurements
grain: cell_id
columns:
  - {name: cell_id, type: BIGINT, role: key}
  - name: area
    type: DOUBLE
    role: feature
    checks: [{range: {min: 0, max: 500}}]
  - name: week
    type: VARCHAR
    role: meta
    checks: [{accepted_values: {values: [Week1, Week2]}}]
"""


def measurements(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "cell_id": np.arange(n),
            "area": rng.normal(250, 120, n),  # tails fall outside [0, 500]
            "week": rng.choice(["Week1", "Week2", "Week3"], n, p=[0.45, 0.45, 0.1]),
        }
    )


def test_gx_counts_match_pandas_across_batches(tmp_path):
    (tmp_path / "measurements.yml").write_text(GX_TABLE)
    frame = measurements(20_000)
    con = duckdb.connect()
    load(con, "measurements", frame)
    results = by_check(run_table_checks(con, "measurements", tmp_path, chunk_rows=3_000))
    out_of_range = int(((frame.area < 0) | (frame.area > 500)).sum())
    unknown_week = int((~frame.week.isin(["Week1", "Week2"])).sum())
    assert out_of_range > 0 and unknown_week > 0
    assert results["range(area, min=0, max=500)"].n_failing == out_of_range
    assert results["accepted_values(week)"].n_failing == unknown_week
    sample = json.loads(results["accepted_values(week)"].sample)
    assert len(sample) == 5 and all(row["week"] == "Week3" for row in sample)
    assert all(frame.week[row["cell_id"]] == "Week3" for row in sample)


def test_gx_mostly_tolerates_a_fraction_and_sample_reads_fewer_rows(tmp_path):
    text = GX_TABLE.replace("values: [Week1, Week2]}", "values: [Week1, Week2], mostly: 0.8}")
    text = text.replace("{min: 0, max: 500}", "{min: 0, max: 500, sample: 1000}")
    (tmp_path / "measurements.yml").write_text(text)
    frame = measurements(20_000)
    con = duckdb.connect()
    load(con, "measurements", frame)
    results = by_check(run_table_checks(con, "measurements", tmp_path))
    assert results["accepted_values(week)"].passed  # ~10% unexpected, 20% allowed
    sampled = results["range(area, min=0, max=500)"]
    assert not sampled.passed and sampled.n_failing < 200  # ~2% of a 1000-row sample
    assert "in a random sample of 1000 rows" in sampled.message


def test_gx_builds_a_real_expectation_suite():
    from cellstore.checks.contract import CheckSpec
    from cellstore.checks.gx_checks import build_suite

    spec = CheckSpec("range", "range(x, min=0)", "error", ("x",), None, {"min": 0, "mostly": 0.9})
    suite = build_suite("t", [spec])
    [expectation] = suite.expectations
    assert type(expectation).__name__ == "ExpectColumnValuesToBeBetween"
    assert expectation.min_value == 0 and expectation.mostly == 0.9
    assert expectation.meta == {"check": "range(x, min=0)"}


def test_gx_writes_no_files(tmp_path, monkeypatch):
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "measurements.yml").write_text(GX_TABLE)
    frame = measurements(100)
    con = duckdb.connect()
    load(con, "measurements", frame)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    run_table_checks(con, "measurements", tmp_path / "schemas")
    assert list(work.iterdir()) == []


def test_great_expectations_is_imported_only_for_tables_with_gx_checks(tmp_path):
    (tmp_path / "nuclei.yml").write_text(
        "table: nuclei\ngrain: id\ncolumns: [{name: id, type: BIGINT, role: key}]\n"
    )
    script = textwrap.dedent(
        f"""
        import sys, duckdb
        from pathlib import Path
        from cellstore.checks import run_table_checks
        con = duckdb.connect()
        con.execute("create table nuclei as select range as id from range(5)")
        results = run_table_checks(con, "nuclei", Path({str(tmp_path)!r}))
        assert all(r.passed for r in results), results
        print("great_expectations" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture
def lake(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = Warehouse(tmp_path / "wh").connect()
    yield con
    con.close()


def test_checks_see_the_uncommitted_version_inside_a_ducklake_transaction(lake, schemas):
    lake.execute("create table images as select 'img' || range as image_id from range(3)")
    good = clean_crops()
    load(lake, "crops", good)
    lake.execute("begin")
    load(lake, "crops", with_row(good, image_id="img9"))
    failed = failing(run_table_checks(lake, "crops", schemas))
    assert set(failed) == {"relationship(image_id -> images)"}
    lake.execute("rollback")
    assert lake.execute("select count(*) from crops").fetchone()[0] == good.num_rows


def test_results_are_recorded_and_survive_a_rollback_when_recorded_after(lake, schemas):
    lake.execute("create table images as select 'img' || range as image_id from range(3)")
    lake.execute("begin")
    load(lake, "crops", with_row(clean_crops(), nucleus_id=7, concentration=-1.0))
    results = run_table_checks(lake, "crops", schemas)
    record_check_results(lake, results, snapshot_id=None)
    lake.execute("rollback")  # a blocked commit takes its results with it ...
    n_tables = "select count(*) from duckdb_tables() where table_name = 'check_results'"
    assert lake.execute(n_tables).fetchone()[0] == 0
    lake.execute("begin")  # ... so the runner records them again in their own transaction
    record_check_results(lake, results, snapshot_id=None)
    lake.execute("commit")
    rows = lake.execute(
        f"select table_name, check_name, severity, passed, n_failing, sample, message, "
        f"snapshot_id, checked_at is not null from {RESULTS_TABLE} order by check_name"
    ).fetchall()
    assert len(rows) == len(results)
    failed = [r for r in rows if not r[3]]
    assert [r[1] for r in failed] == ["range(concentration, min=0, max=100)"]
    assert failed[0][:5] == ("crops", "range(concentration, min=0, max=100)", "error", False, 1)
    assert json.loads(failed[0][5])[0]["concentration"] == -1.0
    assert failed[0][7] is None and failed[0][8] is True


def test_a_check_that_aborts_the_transaction_reports_what_did_not_run(lake, tmp_path):
    (tmp_path / "t.yml").write_text(
        textwrap.dedent(
            """\
            table: t
            columns: [{name: x, type: VARCHAR, role: meta}]
            checks:
              - sql: {name: bad_cast, query: "select x::int as n from t"}
              - row_count: {min: 1}
            """
        )
    )
    lake.execute("begin")
    lake.execute("create table t as select 'not a number' as x")
    results = by_check(run_table_checks(lake, "t", tmp_path))
    assert results["sql(bad_cast)"].blocking
    assert "could not run: Conversion Error" in results["sql(bad_cast)"].message
    assert "row_count(min=1)" in results["checks.not_run"].message
    lake.execute("rollback")


def test_vector_screens_clear_overflow_and_underflow_and_skip_null_lists(tmp_path):
    (tmp_path / "vectors.yml").write_text(
        textwrap.dedent(
            """\
            table: vectors
            grain: id
            columns:
              - {name: id, type: INTEGER, role: key}
              - {name: f, type: "FLOAT[]", role: feature, checks: [vector]}
              - {name: d, type: "DOUBLE[]", role: feature, checks: [vector]}
            """
        )
    )
    con = duckdb.connect()
    con.execute(
        "create table vectors as select * from (values "
        "(1, [1e-30, 1e-30]::float[], [1e308, 1e308]::double[]), "  # v·v underflows; sum overflows
        "(2, null, null), "
        "(3, [1, 2]::float[], [1e-200, 0]::double[])) t(id, f, d)"
    )
    assert all(r.passed for r in run_table_checks(con, "vectors", tmp_path))
    # NULL elements: finite fails, and zero vectors are still found (exact path on all rows).
    con.execute("insert into vectors values (4, [0, 0]::float[], [null, 1]::double[])")
    con.execute("insert into vectors values (5, [3, 4]::float[], [0, null]::double[])")
    failed = failing(run_table_checks(con, "vectors", tmp_path))
    assert set(failed) == {"nonzero_norm(f)", "finite(d)", "nonzero_norm(d)"}
    assert json.loads(failed["nonzero_norm(f)"].sample) == [{"id": 4, "n_elements": 2}]
    assert failed["finite(d)"].n_failing == 2
    assert json.loads(failed["nonzero_norm(d)"].sample) == [{"id": 5, "n_elements": 2}]


def test_relationship_to_differently_named_parent_columns(tmp_path):
    (tmp_path / "neighbors.yml").write_text(
        textwrap.dedent(
            """\
            table: neighbors
            columns:
              - {name: neighbor_image, type: VARCHAR, role: meta}
            checks:
              - relationship: {columns: [neighbor_image], to: images, to_columns: [image_id]}
            """
        )
    )
    con = duckdb.connect()
    con.execute("create table images as select 'img' || range as image_id from range(3)")
    con.execute(
        "create table neighbors as "
        "select * from (values ('img1'), ('img7'), (null)) t(neighbor_image)"
    )
    [_, relationship] = run_table_checks(con, "neighbors", tmp_path)
    assert relationship.check == "relationship(neighbor_image -> images(image_id))"
    assert relationship.n_failing == 1  # NULL is not_null's business, not an orphan
    assert json.loads(relationship.sample) == [{"neighbor_image": "img7"}]


def test_a_failure_inside_great_expectations_is_a_failed_check(schemas, monkeypatch):
    from cellstore.checks import gx_checks

    def broken(*args, **kwargs):
        raise RuntimeError("metric provider exploded")

    monkeypatch.setattr(gx_checks, "_validate", broken)
    results = by_check(run_table_checks(connect_with(clean_crops()), "crops", schemas))
    range_result = results["range(concentration, min=0, max=100)"]
    assert range_result.blocking
    assert "could not run: RuntimeError: metric provider exploded" in range_result.message
    assert results["accepted_values(moa)"].severity == "warn"  # keeps its own severity
    assert results["unique(image_id, nucleus_id)"].passed  # SQL checks unaffected


def test_null_vector_elements_fail_finite_without_aborting_the_transaction(lake, schemas):
    lake.execute("create table images as select 'img' || range as image_id from range(3)")
    lake.execute("begin")
    load(lake, "crops", with_row(clean_crops(), nucleus_id=9, embedding=[1.0, None, 2.0]))
    failed = failing(run_table_checks(lake, "crops", schemas))
    assert set(failed) == {"finite(embedding)"}
    assert json.loads(failed["finite(embedding)"].sample) == [
        {"image_id": "img0", "nucleus_id": 9, "n_elements": 3, "n_nonfinite": 1}
    ]
    lake.execute("commit")  # the screen's list_dot_product error was caught by try()
    assert lake.execute("select count(*) from crops").fetchone()[0] == 7
