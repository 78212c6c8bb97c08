"""One-to-one matching of detected to true nucleus centres."""

from __future__ import annotations

import numpy as np

from cellstore.imaging.evaluation import DetectionScore, match_centres


def test_each_true_nucleus_is_matched_at_most_once():
    truth = np.array([[10.0, 10.0], [30.0, 10.0]])
    detected = np.array([[11.0, 10.0], [9.0, 10.0], [30.0, 14.0], [80.0, 80.0]])
    score = match_centres(detected, truth, radius=5)
    assert score == DetectionScore(true_positives=2, n_truth=2, n_detected=4)
    assert score.recall == 1.0 and score.precision == 0.5


def test_the_matching_is_optimal_not_greedy():
    # Greedy nearest-first would pair d0 with t1 and leave t0 unmatched.
    truth = np.array([[0.0, 0.0], [4.0, 0.0]])
    detected = np.array([[3.0, 0.0], [7.5, 0.0]])
    assert match_centres(detected, truth, radius=4).true_positives == 2


def test_empty_inputs_and_summing():
    assert match_centres(np.zeros((0, 2)), np.ones((3, 2)), 5) == DetectionScore(0, 3, 0)
    total = DetectionScore(1, 2, 1) + DetectionScore(2, 2, 3)
    assert total == DetectionScore(3, 4, 4) and total.recall == 0.75
