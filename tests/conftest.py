"""Shared fixtures: toy projects built in temporary folders."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cellstore.engine.config import load_config
from cellstore.engine.project import load_project
from cellstore.engine.runner import BuildResult, Runner
from cellstore.engine.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]
# What every test build of the repository pipeline adds to its config (a short SimCLR run).
PIPELINE_CONFIG = Path(__file__).resolve().parent / "pipeline.toml"
PIPELINE_SETTINGS = PIPELINE_CONFIG.read_text()


class ToyProject:
    """A project folder with helpers to write stages, build, and query the result."""

    def __init__(self, root: Path):
        self.root = root
        (root / "sql").mkdir(parents=True, exist_ok=True)
        (root / "stages").mkdir(exist_ok=True)
        self.warehouse_dir = root / "warehouse"

    def sql(self, name: str, text: str) -> None:
        (self.root / "sql" / f"{name}.sql").write_text(textwrap.dedent(text))

    def py(self, name: str, text: str) -> None:
        (self.root / "stages" / f"{name}.py").write_text(textwrap.dedent(text))

    def config(self, text: str) -> None:
        (self.root / "cellstore.toml").write_text(textwrap.dedent(text))

    def runner(self, **overrides) -> Runner:
        config = load_config(self.root)
        return Runner(load_project(self.root), config, overrides=overrides)

    def build(
        self, select: list[str] | None = None, full_refresh: bool = False, **overrides
    ) -> BuildResult:
        return self.runner(**overrides).build(select, full_refresh)

    def query(self, sql: str, at: int | None = None) -> list[tuple]:
        con = Warehouse(self.warehouse_dir).connect(read_only=True, snapshot=at)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        """Run the real `cellstore` command in this project folder."""
        proc = subprocess.run(
            [sys.executable, "-m", "cellstore", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"cellstore {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc


@pytest.fixture
def toy(tmp_path: Path) -> ToyProject:
    """numbers (python) → doubled (sql) → total (sql), plus squares (sql) beside doubled."""
    project = ToyProject(tmp_path / "toy")
    project.py(
        "numbers",
        """
        import pyarrow as pa
        from cellstore.stage import stage

        @stage
        def numbers(*, n: int = 5):
            \"\"\"Integers 0..n-1. Grain: i.\"\"\"
            return pa.table({"i": list(range(n))})
        """,
    )
    project.sql(
        "doubled",
        "with numbers as (select * from numbers)\nselect i, i * 2 as twice from numbers\n",
    )
    project.sql("squares", "select i, i * i as square from numbers\n")
    project.sql("total", "select sum(twice) as total from doubled\n")
    return project


# Two plates of different Weeks, so batch-aware stages (TVN, NSCB) see more than one batch.
PIPELINE_PLATES = ["Week1_22123", "Week2_24121"]


class BuiltPipeline:
    """The repository pipeline built once from a 2-plate synthetic source (read-only)."""

    def __init__(self, source: Path, warehouse: Path, first: subprocess.CompletedProcess):
        self.source = source
        self.warehouse = warehouse
        self.first = first


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> BuiltPipeline:
    """`cellstore build` of the whole repository project on two synthetic plates (~1 min).

    Shared by every test that needs a demo-like warehouse: treat it as read-only (copy it
    with shutil.copytree before building into it).
    """
    from cellstore.synth import generate
    from cellstore.synth.demo import DEMO

    root = tmp_path_factory.mktemp("pipeline")
    source = root / "source"
    generate(
        source,
        plates=PIPELINE_PLATES,
        sites=DEMO.sites,
        scale=DEMO.scale,
        seed=DEMO.seed,
        wells=DEMO.wells,
    )
    warehouse = root / "warehouse"
    first = subprocess.run(
        [sys.executable, "-m", "cellstore", "build", "--source", str(source)]
        + ["--warehouse", str(warehouse), "--config", str(PIPELINE_CONFIG)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return BuiltPipeline(source, warehouse, first)


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on 127.0.0.1 for the whole session (stopped at the end)."""
    import os

    from postgres_support import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        message = "PostgreSQL server binaries not found: `make test` installs Debian's postgresql"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must run the Postgres tests, never skip them
        pytest.skip(message)
    server = PostgresServer(bindir)
    try:
        yield server.start()
    finally:
        server.stop()
