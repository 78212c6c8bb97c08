"""Two fresh builds of one source are bit-identical, table by table (issue 14, fix 7)."""

from __future__ import annotations

import pytest
from conftest import REPO
from test_pipeline import PLATES, cellstore

from cellstore.checks.contract import run_columns
from cellstore.engine.verify import content_digests
from cellstore.engine.warehouse import Warehouse
from cellstore.synth import generate
from cellstore.synth.demo import DEMO


def digests(warehouse) -> dict[str, tuple[int, str]]:
    """Every table's content, less what one run measured (role `run`: timings, run ids)."""
    con = Warehouse(warehouse).connect(read_only=True)
    try:
        return content_digests(con, exclude=run_columns(REPO / "schemas"))
    finally:
        con.close()


@pytest.mark.slow
def test_two_fresh_builds_are_bit_identical(tmp_path):
    source = tmp_path / "source"
    generate(
        source, plates=PLATES, sites=DEMO.sites, scale=DEMO.scale, seed=DEMO.seed, wells=DEMO.wells
    )
    built = []
    for name in ("first", "second"):
        warehouse = tmp_path / name
        proc = cellstore("build", "--source", str(source), warehouse=warehouse)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        built.append(digests(warehouse))
    first, second = built
    assert set(first) == set(second) and len(first) >= 13
    differing = sorted(t for t in first if first[t] != second[t])
    assert not differing, f"tables that differ between two builds of one source: {differing}"
    assert first["moa_neighbors"][0] > 0 and first["cell_features"][0] > 1000
