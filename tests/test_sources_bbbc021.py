"""The real BBBC021 metadata shipped with cellstore, parsed by the loader."""

from __future__ import annotations

from collections import Counter

import pytest

from cellstore.sources.bbbc021 import read_image_rows, read_moa
from cellstore.synth.plates import shipped_metadata


@pytest.fixture(scope="module")
def rows():
    _, parsed = read_image_rows(shipped_metadata())
    return parsed


def test_real_image_metadata_counts(rows):
    assert len(rows) == 13_200
    assert all(row.ok for row in rows)
    values = [row.values for row in rows]
    assert len({v["image_id"] for v in values}) == 13_200
    assert len({v["plate"] for v in values}) == 55
    assert len({(v["plate"], v["well"]) for v in values}) == 3_300
    plates_per_week = Counter(w for w, _ in {(v["batch"], v["plate"]) for v in values})
    assert plates_per_week == {
        "Week1": 6,
        "Week2": 6,
        "Week3": 6,
        "Week4": 6,
        "Week5": 6,
        "Week6": 6,
        "Week7": 5,
        "Week8": 5,
        "Week9": 6,
        "Week10": 3,
    }
    assert Counter(v["site"] for v in values) == {1: 3300, 2: 3300, 3: 3300, 4: 3300}
    assert {v["replicate"] for v in values} == {1, 2, 3}
    assert len({v["compound"] for v in values}) == 113
    assert len({v["concentration"] for v in values}) == 53
    assert "ICI-182,780" in {v["compound"] for v in values}  # a quoted name with a comma


def test_real_moa_counts_and_annotated_subset(rows):
    moa = read_moa(shipped_metadata())
    assert len(moa) == 104
    treatments = {(m["compound"], m["concentration"]) for m in moa}
    assert len(treatments - {("DMSO", 0.0)}) == 103
    assert len({m["moa"] for m in moa} - {"DMSO"}) == 12
    assert len({m["compound"] for m in moa} - {"DMSO"}) == 38
    annotated = [
        r.values for r in rows if (r.values["compound"], r.values["concentration"]) in treatments
    ]
    assert len(annotated) == 3_848
    assert len({(v["plate"], v["well"]) for v in annotated}) == 962
    assert len({v["plate"] for v in annotated}) == 55
    dmso = [v for v in annotated if v["compound"] == "DMSO"]
    assert len(dmso) == 1_320
    # Every treatment of moa.csv occurs in image.csv (same canonical concentration).
    used = {(r.values["compound"], r.values["concentration"]) for r in rows}
    assert treatments <= used
