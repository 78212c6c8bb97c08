"""NSC / NSCB 1-NN and mAP: numpy library and SQL stages against scikit-learn oracles."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from profiling_support import put, run_sql_stage, treatment_table
from sklearn.metrics import average_precision_score
from sklearn.neighbors import KNeighborsClassifier

from cellstore.profiling.neighbors import (
    NSCB_EXCLUDED_MOAS,
    average_precision,
    batch_string,
    candidate_mask,
    cosine_similarity,
    evaluate_moa,
    mean_average_precision,
    nearest_neighbors,
)

MOAS = ["Actin disruptors", "DNA damage", "Eg5 inhibitors", "Kinase inhibitors", "Epithelial"]
BATCHES = ["Week1", "Week2", "Week3", "Week1,Week2", "Week2,Week3"]


@pytest.fixture
def treatments() -> dict[str, np.ndarray]:
    """5 MoAs x 3 compounds x 2 concentrations, 12 features, MoA signal plus noise.

    Rows are sorted by (compound, concentration), the SQL stages' tie order.
    """
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(len(MOAS), 12)) * 2
    rows = []
    for m, moa in enumerate(MOAS):
        for c in range(3):
            for concentration in (0.1, 1.0):
                rows.append((f"{moa[:3]}-{c}", concentration, moa, BATCHES[rng.integers(5)], m))
    rows.sort()
    return {
        "compounds": np.array([r[0] for r in rows]),
        "concentrations": np.array([r[1] for r in rows]),
        "moas": np.array([r[2] for r in rows]),
        "batches": np.array([r[3] for r in rows]),
        "x": np.stack([centres[r[4]] + rng.normal(size=12) * 1.5 for r in rows]),
    }


def sklearn_predictions(x: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> list:
    """1-NN label of each row among the columns mask allows (None when none is allowed)."""
    predictions = []
    for i in range(len(x)):
        allowed = mask[i]
        if not allowed.any():
            predictions.append(None)
            continue
        knn = KNeighborsClassifier(n_neighbors=1, metric="cosine", algorithm="brute")
        knn.fit(x[allowed], labels[allowed])
        predictions.append(knn.predict(x[i : i + 1])[0])
    return predictions


def nscb_subset(t: dict[str, np.ndarray]) -> np.ndarray:
    return ~np.isin(t["moas"], NSCB_EXCLUDED_MOAS)


def sql_results(t: dict[str, np.ndarray], x: np.ndarray | None = None):
    con = duckdb.connect()
    put(
        con,
        "treatment_profiles",
        treatment_table(
            t["x"] if x is None else x,
            t["compounds"].tolist(),
            t["concentrations"].tolist(),
            t["moas"].tolist(),
            t["batches"].tolist(),
        ),
    )
    neighbors = run_sql_stage(con, "moa_neighbors").to_pandas()
    accuracy = run_sql_stage(con, "moa_accuracy").to_pylist()
    return neighbors, accuracy


def test_batch_string_is_sorted_distinct_comma_joined():
    assert batch_string(["Week2", "Week1", "Week2"]) == "Week1,Week2"
    assert batch_string(["Week3"]) == "Week3"


def test_library_nsc_matches_sklearn(treatments):
    x, moas = treatments["x"], treatments["moas"]
    mask = candidate_mask(treatments["compounds"])
    neighbors = nearest_neighbors(x, mask)
    assert list(moas[neighbors.index]) == sklearn_predictions(x, moas, mask)


def test_library_nscb_matches_sklearn(treatments):
    kept = nscb_subset(treatments)
    x, moas = treatments["x"][kept], treatments["moas"][kept]
    mask = candidate_mask(treatments["compounds"][kept], treatments["batches"][kept])
    expected = sklearn_predictions(x, moas, mask)
    neighbors = nearest_neighbors(x, mask)
    got = [moas[i] if i >= 0 else None for i in neighbors.index]
    assert got == expected


def test_sql_nsc_and_nscb_match_sklearn(treatments):
    neighbors, accuracy = sql_results(treatments)
    t = treatments
    nsc_expected = sklearn_predictions(t["x"], t["moas"], candidate_mask(t["compounds"]))
    nsc = neighbors[neighbors.protocol == "nsc"]
    assert list(nsc.compound) == list(t["compounds"])
    assert list(nsc.neighbor_moa) == nsc_expected
    kept = nscb_subset(t)
    nscb_expected = sklearn_predictions(
        t["x"][kept], t["moas"][kept], candidate_mask(t["compounds"][kept], t["batches"][kept])
    )
    nscb = neighbors[neighbors.protocol == "nscb"]
    assert [None if v is None or v != v else v for v in nscb.neighbor_moa] == nscb_expected
    [row] = accuracy
    assert row["n_nsc"] == len(t["x"]) == 30 and row["n_nscb"] == kept.sum() == 24
    assert row["nsc"] == pytest.approx(np.mean(np.array(nsc_expected) == t["moas"]))
    hits = [p == m for p, m in zip(nscb_expected, t["moas"][kept], strict=True)]
    assert row["nscb"] == pytest.approx(np.mean(hits))
    assert row["drop"] == pytest.approx(row["nsc"] - row["nscb"])


def test_sql_scores_equal_library_scores(treatments):
    t = treatments
    _, [row] = sql_results(t)
    scores = evaluate_moa(t["x"], t["compounds"], t["moas"], t["batches"])
    assert row["nsc"] == pytest.approx(scores.nsc)
    assert row["nscb"] == pytest.approx(scores.nscb)
    assert row["map"] == pytest.approx(scores.map)
    assert (row["n_nsc"], row["n_nscb"]) == (scores.n_nsc, scores.n_nscb)


def test_average_precision_matches_sklearn(treatments):
    t = treatments
    similarity = cosine_similarity(t["x"])
    mask = candidate_mask(t["compounds"])
    expected = []
    for i in range(len(t["x"])):
        positive = t["moas"] == t["moas"][i]
        ap = average_precision(similarity[i], mask[i], positive)
        oracle = average_precision_score(positive[mask[i]], similarity[i][mask[i]])
        assert ap == pytest.approx(oracle)
        expected.append(oracle)
    assert mean_average_precision(t["x"], t["moas"], mask) == pytest.approx(np.mean(expected))
    neighbors, _ = sql_results(t)
    nsc = neighbors[neighbors.protocol == "nsc"]
    np.testing.assert_allclose(nsc.average_precision.to_numpy(), expected, rtol=1e-9)


def test_query_with_every_candidate_masked_counts_as_a_miss(treatments):
    t = dict(treatments)
    t["batches"] = np.full(len(t["x"]), "Week1")  # one batch: NSCB masks every candidate
    neighbors, [row] = sql_results(t)
    nscb = neighbors[neighbors.protocol == "nscb"]
    assert len(nscb) == 24 and nscb.neighbor_compound.isna().all()
    assert not nscb.is_correct.any() and (nscb.n_candidates == 0).all()
    assert row["nscb"] == 0.0 and row["n_nscb"] == 24
    assert row["nsc"] > 0.5
    scores = evaluate_moa(t["x"], t["compounds"], t["moas"], t["batches"])
    assert scores.nscb == 0.0 and scores.n_nscb == 24


def test_zero_norm_profiles_neither_query_nor_answer(treatments):
    t = treatments
    x = t["x"].copy()
    x[0] = 0.0
    neighbors, [row] = sql_results(t, x)
    nsc = neighbors[neighbors.protocol == "nsc"]
    zero = nsc[(nsc.compound == t["compounds"][0]) & (nsc.concentration == t["concentrations"][0])]
    assert zero.is_zero_norm.item() and zero.neighbor_compound.isna().item()
    assert not zero.is_correct.item()
    others = nsc[~nsc.is_zero_norm]
    hit_zero = (others.neighbor_compound == t["compounds"][0]) & (
        others.neighbor_concentration == t["concentrations"][0]
    )
    assert not hit_zero.any()
    same_compound = others.compound == t["compounds"][0]
    assert (others.n_candidates == np.where(same_compound, 28, 27)).all()
    library = nearest_neighbors(x, candidate_mask(t["compounds"]))
    assert library.index[0] == -1 and 0 not in library.index
    assert row["nsc"] == pytest.approx(evaluate_moa(x, t["compounds"], t["moas"], t["batches"]).nsc)


def test_only_allowed_candidate_with_zero_norm_leaves_no_neighbour():
    t = {
        "compounds": np.array(["a", "b"]),
        "concentrations": np.array([1.0, 1.0]),
        "moas": np.array(["Epithelial", "Epithelial"]),
        "batches": np.array(["Week1", "Week2"]),
    }
    x = np.array([[1.0, 2.0], [0.0, 0.0]])
    neighbors, [row] = sql_results(t, x)
    assert neighbors.neighbor_compound.isna().all()
    assert row["nsc"] == 0.0 and row["n_nsc"] == 2


def test_ties_go_to_the_first_candidate_by_compound_then_concentration():
    t = {
        "compounds": np.array(["a", "b", "b", "c"]),
        "concentrations": np.array([1.0, 0.3, 3.0, 1.0]),
        "moas": np.array(["Epithelial", "DNA damage", "Eg5 inhibitors", "Epithelial"]),
        "batches": np.array(["Week1", "Week2", "Week2", "Week3"]),
    }
    x = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [5.0, 0.0]])  # all cosine 1
    neighbors, _ = sql_results(t, x)
    nsc = neighbors[neighbors.protocol == "nsc"].set_index("compound")
    assert nsc.loc["a", "neighbor_compound"] == "b"
    assert nsc.loc["a", "neighbor_concentration"] == 0.3
    assert nsc.loc["c", "neighbor_compound"] == "a"
    library = nearest_neighbors(x, candidate_mask(t["compounds"]))
    assert library.index.tolist() == [1, 0, 0, 0]


def test_unannotated_treatments_are_not_evaluated(treatments):
    t = dict(treatments)
    moas = t["moas"].astype(object)
    moas[:2] = None
    t["moas"] = moas
    unannotated = t["compounds"][0]
    assert t["compounds"][1] == unannotated  # both concentrations of one compound
    neighbors, [row] = sql_results(t)
    assert row["n_nsc"] == 28
    assert not (neighbors.compound == unannotated).any()
    assert not (neighbors.neighbor_compound == unannotated).any()
