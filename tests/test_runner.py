"""Toy-project builds: order, skipping, selection, failures, incremental and artifact stages."""

from __future__ import annotations

import pytest

from cellstore.errors import CellstoreError


def statuses(result) -> dict[str, str]:
    return {r.stage: r.status for r in result.results}


def test_builds_in_dependency_order(toy):
    result = toy.build()
    order = [r.stage for r in result.results]
    assert order.index("numbers") < order.index("doubled") < order.index("total")
    assert order.index("numbers") < order.index("squares")
    assert result.ok
    assert toy.query("select total from total") == [(20,)]


def test_unchanged_project_is_skipped(toy):
    toy.build()
    result = toy.build()
    assert set(statuses(result).values()) == {"up to date"}


def test_upstream_change_rebuilds_exactly_downstream(toy):
    toy.build()
    toy.sql("doubled", "select i, i * 3 as twice from numbers\n")
    result = toy.build()
    assert statuses(result) == {
        "numbers": "up to date",
        "doubled": "built",
        "squares": "up to date",
        "total": "built",
    }
    assert toy.query("select total from total") == [(30,)]


def test_settings_change_rebuilds_stage_and_downstream(toy):
    toy.build()
    toy.config("[stages.numbers]\nn = 6\n")
    result = toy.build()
    assert set(statuses(result).values()) == {"built"}
    assert toy.query("select total from total") == [(30,)]


def test_selection_with_and_without_neighbours(toy):
    assert set(statuses(toy.build(["+doubled"]))) == {"numbers", "doubled"}
    toy.sql("squares", "select i, i * i * i as square from numbers\n")
    assert statuses(toy.build(["numbers+"])) == {
        "numbers": "up to date",
        "doubled": "up to date",
        "squares": "built",
        "total": "built",
    }
    assert set(statuses(toy.build(["total"]))) == {"total"}
    with pytest.raises(CellstoreError, match="no stage or table named 'nope'"):
        toy.build(["nope"])


def test_selected_stage_with_unbuilt_input_fails_clearly(toy):
    result = toy.build(["total"])
    failure = result.first_failure()
    assert failure is not None and failure.stage == "total"
    assert "input table doubled has not been built" in failure.error


def test_full_refresh_rebuilds_everything(toy):
    toy.build()
    result = toy.build(full_refresh=True)
    assert set(statuses(result).values()) == {"built"}


def test_dry_run_plans_without_building(toy):
    plans = {p.stage: p for p in toy.runner().plan()}
    assert plans["numbers"].action == "build" and plans["numbers"].reason == "never built"
    assert not (toy.warehouse_dir / "catalog.sqlite").exists()
    toy.build()
    toy.sql("doubled", "select i, i * 3 as twice from numbers\n")
    plans = {p.stage: p for p in toy.runner().plan()}
    assert plans["doubled"].action == "build"
    assert plans["total"].action == "build" and "doubled" in plans["total"].reason
    assert plans["squares"].action == "skip"


def test_python_exception_keeps_previous_version_and_blocks_downstream(toy):
    toy.build()
    toy.py(
        "numbers",
        """
        from cellstore.stage import stage

        @stage
        def numbers(*, n: int = 5):
            raise ValueError("plate map is corrupt")
        """,
    )
    result = toy.build()
    assert not result.ok
    st = statuses(result)
    assert st["numbers"] == "failed"
    assert st["doubled"] == st["squares"] == st["total"] == "blocked"
    failure = result.first_failure()
    assert "stage numbers" in failure.error and "plate map is corrupt" in failure.error
    assert toy.query("select count(*) from numbers") == [(5,)]
    assert toy.query("select total from total") == [(20,)]
    runs = toy.query(
        "select stage, status from cellstore_meta.runs where status in ('failed', 'blocked') "
        "order by stage"
    )
    assert runs == [
        ("doubled", "blocked"),
        ("numbers", "failed"),
        ("squares", "blocked"),
        ("total", "blocked"),
    ]


def test_sql_error_publishes_nothing(toy):
    toy.build()
    toy.sql("doubled", "select i, no_such_column from numbers\n")
    result = toy.build()
    failure = result.first_failure()
    assert failure.stage == "doubled"
    assert "no_such_column" in failure.error and "sql/doubled.sql" in failure.error
    assert toy.query("select count(*), sum(twice) from doubled") == [(5, 20)]
    assert statuses(result)["squares"] == "up to date"


def test_wrong_declared_outputs_is_an_error(toy):
    toy.py(
        "numbers",
        """
        import pyarrow as pa
        from cellstore.stage import stage

        @stage(outputs=["numbers", "numbers_rejected"])
        def numbers():
            return {"numbers": pa.table({"i": [1]})}
        """,
    )
    failure = toy.build(["numbers"]).first_failure()
    assert "declared ['numbers', 'numbers_rejected']" in failure.error


def test_time_travel_returns_old_rows(toy):
    snapshots = []
    for n in (3, 4, 5):
        toy.config(f"[stages.numbers]\nn = {n}\n")
        result = toy.build(["numbers"])
        snapshots.append(result.results[0].snapshot_id)
    assert len(set(snapshots)) == 3
    counts = [toy.query("select count(*) from numbers", at=s)[0][0] for s in snapshots]
    assert counts == [3, 4, 5]


def test_multi_output_stage_commits_both_tables(toy):
    toy.py(
        "numbers",
        """
        import pyarrow as pa
        from cellstore.stage import stage

        @stage(outputs=["numbers", "numbers_rejected"])
        def numbers():
            return {
                "numbers": pa.table({"i": [0, 1, 2]}),
                "numbers_rejected": pa.table({"row": [3], "reason": ["negative"]}),
            }
        """,
    )
    result = toy.build()
    assert result.ok
    snaps = {r.stage: r.snapshot_id for r in result.results}
    assert toy.query("select reason from numbers_rejected") == [("negative",)]
    # Both tables were published by the same snapshot.
    changes = toy.query(
        f"select changes from lake.snapshots() where snapshot_id = {snaps['numbers']}"
    )[0][0]
    assert {"main.numbers", "main.numbers_rejected"} <= set(changes["tables_created"])


INCREMENTAL_STAGE = """
import pyarrow as pa
from cellstore.stage import stage

CALLS = []

@stage(incremental="image_id")
def cells(images, *, per_image: int = 2, ctx):
    rows = images.fetchall()
    with open({log!r}, "a") as log:
        log.write(",".join(sorted(r[0] for r in rows)) + "\\n")
    out = {{"image_id": [], "cell": []}}
    for (image_id, n_cells) in rows:
        for c in range(n_cells):
            out["image_id"].append(image_id)
            out["cell"].append(c)
    return pa.table(out, schema=pa.schema([("image_id", pa.string()), ("cell", pa.int64())]))
"""


def test_incremental_stage_processes_only_new_keys(toy, tmp_path):
    log = tmp_path / "calls.log"
    toy.py(
        "images",
        """
        import pyarrow as pa
        from cellstore.stage import stage

        @stage
        def images(*, plates: list = ["a"]):
            ids = [f"{p}{k}" for p in plates for k in range(2)]
            n_cells = [0 if i.endswith("0") else 2 for i in ids]
            return pa.table({"image_id": ids, "n_cells": n_cells})
        """,
    )
    toy.py("cells", INCREMENTAL_STAGE.format(log=str(log)))
    toy.build(["+cells"])
    assert toy.query("select count(*) from cells") == [(2,)]  # a0 has no cells, a1 has two
    toy.config('[stages.images]\nplates = ["a", "b"]\n')
    result = toy.build(["+cells"])
    assert {r.stage: r.status for r in result.results}["cells"] == "incremental"
    assert log.read_text().splitlines() == ["a0,a1", "b0,b1"]  # a0 was not reprocessed
    assert toy.query("select count(*) from cells") == [(4,)]
    assert set(statuses(toy.build(["+cells"])).values()) == {"up to date"}
    # A plate removed upstream: its cells go too, nothing is recomputed.
    toy.config('[stages.images]\nplates = ["b"]\n')
    toy.build(["+cells"])
    assert toy.query("select distinct image_id from cells order by 1") == [("b1",)]
    assert log.read_text().splitlines()[-1] == ""
    # Changing the stage's own settings recomputes everything.
    toy.config('[stages.images]\nplates = ["b"]\n[stages.cells]\nper_image = 3\n')
    result = toy.build(["+cells"])
    assert statuses(result)["cells"] == "built"
    assert log.read_text().splitlines()[-1] == "b0,b1"


def test_artifact_stage_gets_versioned_folder_and_downstream_gets_path(toy):
    toy.py(
        "encoder",
        """
        from cellstore.stage import stage

        @stage(artifact=True)
        def encoder(numbers, *, epochs: int = 1, ctx):
            (ctx.artifact_dir / "weights.txt").write_text(str(epochs) * 10)
        """,
    )
    toy.py(
        "embeddings",
        """
        import pyarrow as pa
        from cellstore.stage import stage

        @stage
        def embeddings(encoder, numbers):
            weights = (encoder / "weights.txt").read_text()
            return pa.table({"i": [r[0] for r in numbers.fetchall()], "w": [weights] * 5})
        """,
    )
    toy.build()
    first = toy.query("select artifact_dir, bytes from encoder")
    assert first[0][1] == 10
    toy.config("[stages.encoder]\nepochs = 2\n")
    assert statuses(toy.build())["embeddings"] == "built"
    second = toy.query("select artifact_dir from encoder")[0][0]
    assert second != first[0][0]
    assert toy.query("select distinct w from embeddings") == [("2" * 10,)]


def test_config_errors_name_the_key(toy):
    toy.config("warehous = 'x'\n")
    with pytest.raises(CellstoreError, match="unknown key 'warehous'"):
        toy.build()
    toy.config("[stages.numbers]\nm = 3\n")
    with pytest.raises(CellstoreError, match=r"\[stages.numbers\] unknown key 'm'"):
        toy.build()
    toy.config("[stages.numbrs]\nn = 3\n")
    with pytest.raises(CellstoreError, match=r"\[stages.numbrs\] names no stage"):
        toy.build()
    toy.config("[stages.numbers]\nn = 'five'\n")
    with pytest.raises(CellstoreError, match="setting 'n' of stage numbers must be int"):
        toy.build()


def test_project_errors_name_the_files(toy):
    from cellstore.engine.project import load_project

    toy.sql("numbers", "select 1 as i\n")
    with pytest.raises(CellstoreError, match="duplicate stage 'numbers'"):
        load_project(toy.root)
    (toy.root / "sql" / "numbers.sql").unlink()
    toy.sql("orphan", "select * from missing_table\n")
    with pytest.raises(CellstoreError, match=r"sql/orphan.sql reads table 'missing_table'"):
        load_project(toy.root)
    (toy.root / "sql" / "orphan.sql").unlink()
    toy.sql("broken", "selec 1\n")
    with pytest.raises(CellstoreError, match=r"broken.sql: SQL does not parse"):
        load_project(toy.root)
    (toy.root / "sql" / "broken.sql").unlink()
    toy.sql("a", "select * from b\n")
    toy.sql("b", "select * from a\n")
    with pytest.raises(
        CellstoreError, match=r"dependency cycle: sql/a.sql -> sql/b.sql -> sql/a.sql"
    ):
        toy.runner()


def test_failing_error_check_blocks_commit_and_downstream(toy):
    (toy.root / "schemas").mkdir()
    (toy.root / "schemas" / "numbers.yml").write_text(
        "table: numbers\ncolumns:\n  - name: i\n    type: BIGINT\n    role: key\n"
        "    checks:\n      - range: {max: 5}\n"
    )
    first = toy.build()
    assert first.ok
    numbers_snapshot = {r.stage: r.snapshot_id for r in first.results}["numbers"]
    recorded = toy.query(
        "select snapshot_id, passed from cellstore_meta.check_results "
        "where table_name = 'numbers' and check_name like 'range%'"
    )
    assert recorded == [(numbers_snapshot, True)]
    toy.config("[stages.numbers]\nn = 8\n")  # i = 7 breaks the range check
    result = toy.build()
    st = statuses(result)
    assert st["numbers"] == "failed" and st["doubled"] == "blocked"
    assert "range" in result.first_failure().error and "numbers" in result.first_failure().error
    assert toy.query("select count(*) from numbers") == [(5,)]
    failed = toy.query(
        "select snapshot_id, n_failing from cellstore_meta.check_results "
        "where not passed and table_name = 'numbers'"
    )
    assert failed == [(None, 2)]


@pytest.mark.parametrize("kind", ["polars", "pandas", "arrow-reader"])
def test_python_stage_may_return_polars_pandas_or_a_batch_reader(toy, kind):
    body = {
        "polars": "import polars as pl\n    return pl.DataFrame({'i': [1, 2], 's': ['a', 'b']})",
        "pandas": "import pandas as pd\n    return pd.DataFrame({'i': [1, 2], 's': ['a', 'b']})",
        "arrow-reader": "import pyarrow as pa\n    t = pa.table({'i': [1, 2], 's': ['a', 'b']})\n"
        "    return pa.RecordBatchReader.from_batches(t.schema, t.to_batches())",
    }[kind]
    (toy.root / "stages" / "numbers.py").write_text(
        f"from cellstore.stage import stage\n\n@stage\ndef numbers():\n    {body}\n"
    )
    assert toy.build(["numbers"]).ok
    assert toy.query("select i, s from numbers order by i") == [(1, "a"), (2, "b")]


def test_watch_hook_sees_outside_state_the_stage_created(toy, tmp_path):
    """A loader that creates its source on first run is up to date on the next build."""
    source = tmp_path / "source.txt"
    toy.py(
        "numbers",
        f"""
        import pathlib
        import pyarrow as pa
        from cellstore.stage import stage

        SOURCE = pathlib.Path({str(source)!r})

        def _state(settings, ctx):
            assert ctx.cache_dir.name == "cache"
            return SOURCE.read_text() if SOURCE.exists() else "missing"

        @stage(watch=_state)
        def numbers():
            if not SOURCE.exists():
                SOURCE.write_text("1,2,3")
            return pa.table({{"i": [int(x) for x in SOURCE.read_text().split(",")]}})
        """,
    )
    assert toy.build(["numbers"]).ok
    assert statuses(toy.build(["numbers"])) == {"numbers": "up to date"}
    source.write_text("4,5")
    result = toy.build(["numbers"])
    assert statuses(result) == {"numbers": "built"}
    assert result.results[0].reason == "input changed: source files"
    assert toy.query("select sum(i) from numbers") == [(9,)]


def test_unhashed_settings_do_not_trigger_a_rebuild(toy):
    toy.py(
        "numbers",
        """
        import pyarrow as pa
        from cellstore.stage import stage

        @stage(unhashed=("workers",))
        def numbers(*, n: int = 5, workers: int = 1):
            return pa.table({"i": list(range(n))})
        """,
    )
    toy.build()
    toy.config("[stages.numbers]\nworkers = 4\n")
    assert set(statuses(toy.build()).values()) == {"up to date"}
    toy.config("[stages.numbers]\nworkers = 4\nn = 6\n")
    assert statuses(toy.build())["numbers"] == "built"
