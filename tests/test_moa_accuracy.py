"""sql/moa_accuracy.sql: NSC / NSCB are NULL with a reason when they cannot be measured."""

from __future__ import annotations

from conftest import REPO, ToyProject

NEIGHBORS = '''
import pyarrow as pa
from cellstore.stage import stage

ROWS = {rows!r}

@stage
def moa_neighbors():
    """Hand-written 1-NN outcomes. Grain: (source, variant, protocol, compound)."""
    return pa.Table.from_pylist([
        dict(feature_source="s", postprocessing="none", protocol=protocol, compound=compound,
             concentration=1.0, moa=moa, is_correct=correct, average_precision=ap)
        for protocol, compound, moa, correct, ap in ROWS
    ])
'''


def accuracy(tmp_path, rows) -> dict:
    toy = ToyProject(tmp_path / "acc")
    toy.py("moa_neighbors", NEIGHBORS.format(rows=rows))
    toy.sql("moa_accuracy", (REPO / "sql" / "moa_accuracy.sql").read_text())
    assert toy.build().ok
    names = "nsc, nscb, drop, n_nsc, n_nscb, map, unscored_moas, note"
    (row,) = toy.query(f"select {names} from moa_accuracy")
    return dict(zip(names.split(", "), row, strict=True))


def test_moas_with_one_compound_make_nsc_null_with_a_reason(tmp_path):
    # Each MoA has one compound (as on a 2-plate source): no neighbour can ever be right.
    rows = [
        (protocol, compound, moa, False, None)
        for protocol in ("nsc", "nscb")
        for compound, moa in (("taxol", "Microtubule stabilizers"), ("AZ138", "Eg5 inhibitors"))
    ]
    got = accuracy(tmp_path, rows)
    assert got["nsc"] is None and got["nscb"] is None and got["drop"] is None
    assert got["n_nsc"] == 0 and got["n_nscb"] == 0 and got["map"] is None
    assert got["unscored_moas"] == ["Eg5 inhibitors", "Microtubule stabilizers"]
    assert "fewer than two compounds" in got["note"] and "Eg5 inhibitors" in got["note"]


def test_only_treatments_that_can_be_right_are_scored(tmp_path):
    rows = [
        ("nsc", "taxol", "Microtubule stabilizers", True, 1.0),
        ("nsc", "epothilone", "Microtubule stabilizers", False, 0.5),
        ("nsc", "AZ138", "Eg5 inhibitors", False, None),  # its MoA's only compound
        ("nscb", "taxol", "Microtubule stabilizers", True, 1.0),
        ("nscb", "epothilone", "Microtubule stabilizers", True, 1.0),
    ]
    got = accuracy(tmp_path, rows)
    assert got["nsc"] == 0.5 and got["n_nsc"] == 2
    assert got["nscb"] == 1.0 and got["n_nscb"] == 2 and got["drop"] == -0.5
    assert got["map"] == 0.75 and got["unscored_moas"] == ["Eg5 inhibitors"]


def test_every_moa_with_two_compounds_scores_every_treatment(tmp_path):
    rows = [
        ("nsc", "taxol", "Microtubule stabilizers", True, 1.0),
        ("nsc", "epothilone", "Microtubule stabilizers", True, 1.0),
        ("nsc", "AZ138", "Eg5 inhibitors", False, 0.5),
        ("nsc", "AZ-1", "Eg5 inhibitors", True, 1.0),
    ]
    got = accuracy(tmp_path, rows)
    assert got["nsc"] == 0.75 and got["n_nsc"] == 4 and got["map"] == 0.875
    assert got["nscb"] is None and got["n_nscb"] == 0  # no NSCB row at all
    assert got["unscored_moas"] is None and got["note"] is None
