"""The HTML report: every section renders, every PNG decodes and is referenced by the page."""

from __future__ import annotations

import re

import duckdb
import matplotlib.image
import numpy as np
import pytest
from profiling_support import evaluated, put, synthetic_wells

from cellstore.errors import CellstoreError
from cellstore.profiling.report import batch_silhouette, chosen_variants, embed_2d, write_report


@pytest.fixture(scope="module")
def evaluated_con() -> duckdb.DuckDBPyConnection:
    """Two synthetic feature sources with cell counts, evaluated end to end, and the log of
    a three-epoch SimCLR run."""
    from cellstore.ssl.tables import log_table

    con = evaluated(duckdb.connect(), synthetic_wells())
    rows = [
        {"epoch": e, "loss": 5.0 - e, "lr": 3e-4, "cells_per_s": 300.0 + e, "seconds": 90.0,
         "peak_device_memory_bytes": 2**30, "memory_measure": "process_peak_rss",
         "device": "cpu", "processes": 1, "pos_top1": 0.1 * e, "steps": 117, "cells": 29952}
        for e in range(3)
    ]  # fmt: skip
    put(con, "training_log", log_table(rows))
    return con


@pytest.fixture(scope="module")
def rendered(evaluated_con, tmp_path_factory):
    return write_report(evaluated_con, tmp_path_factory.mktemp("report"), subtitle="synthetic")


def test_report_renders_every_section(rendered):
    summary = rendered
    page = summary.html.read_text()
    referenced = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(referenced) == sorted(p.name for p in summary.images)
    assert sorted(referenced) == sorted(p.name for p in summary.html.parent.glob("*.png"))
    # accuracy, training curves, 2 confusion matrices, 2 maps, 2 batch panels, cells per well
    assert len(referenced) == 9
    for path in summary.images:
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert image[..., :3].std() > 0  # not a blank canvas
    headings = ("MoA classification accuracy", "SimCLR training", "Confusion matrices")
    for heading in (*headings, "Cells per well"):
        assert heading in page
    assert summary.notes == []
    assert "training.png" in referenced  # the loss and throughput curves
    assert "<script" not in page and "http" not in page  # readable offline


def test_accuracy_table_lists_every_source_and_variant(rendered):
    page = rendered.html.read_text()
    for source in ("cells_a", "cells_b"):
        for variant in ("none", "standardize", "robustize", "whitening", "tvn"):
            assert f"<td>{source}</td><td>{variant}</td>" in page


def test_missing_tables_become_notes(tmp_path):
    con = duckdb.connect()
    put(con, "well_profiles", synthetic_wells())
    summary = write_report(con, tmp_path)
    assert [p.name for p in summary.images] == ["cells_per_well.png"]
    assert any("moa_accuracy is not built" in note for note in summary.notes)
    assert any("moa_neighbors is not built" in note for note in summary.notes)


def test_plotted_variant_is_the_best_nsc_unless_chosen(evaluated_con):
    best = chosen_variants(evaluated_con, None)
    for source, variant in best.items():
        top = evaluated_con.execute(
            "select max(nsc) from moa_accuracy where feature_source = ?", [source]
        ).fetchone()[0]
        nsc = evaluated_con.execute(
            "select nsc from moa_accuracy where feature_source = ? and postprocessing = ?",
            [source, variant],
        ).fetchone()[0]
        assert nsc == top
    assert set(chosen_variants(evaluated_con, "none").values()) == {"none"}
    with pytest.raises(CellstoreError, match="no post-processing 'zca'"):
        chosen_variants(evaluated_con, "zca")


def test_batch_silhouette_drops_after_tvn(evaluated_con):
    def silhouette(variant: str) -> float:
        rows = evaluated_con.execute(
            "select batch, features from well_profiles_normalized where feature_source = "
            "'cells_a' and postprocessing = ? and compound = 'DMSO'",
            [variant],
        ).fetchall()
        return batch_silhouette(np.array([r[1] for r in rows]), [r[0] for r in rows])

    assert silhouette("tvn") < silhouette("whitening")
    assert silhouette("none") > 0.3  # the planted Week shift


def test_embedding_handles_tiny_inputs():
    assert embed_2d(np.ones((1, 4))).shape == (1, 2)
    assert embed_2d(np.zeros((3, 4))).shape == (3, 2)
    assert embed_2d(np.random.default_rng(0).normal(size=(5, 3))).shape == (5, 2)
