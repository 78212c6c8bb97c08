"""Scoring nucleus detection against ground-truth centres (one-to-one matching in a radius)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DetectionScore:
    """Counts of a one-to-one matching; recall = tp / truth, precision = tp / detected."""

    true_positives: int
    n_truth: int
    n_detected: int

    @property
    def recall(self) -> float:
        return self.true_positives / self.n_truth if self.n_truth else 1.0

    @property
    def precision(self) -> float:
        return self.true_positives / self.n_detected if self.n_detected else 1.0

    def __add__(self, other: DetectionScore) -> DetectionScore:
        return DetectionScore(
            self.true_positives + other.true_positives,
            self.n_truth + other.n_truth,
            self.n_detected + other.n_detected,
        )


def match_centres(detected: np.ndarray, truth: np.ndarray, radius: float) -> DetectionScore:
    """Maximum one-to-one matching of (N, 2) detected to (M, 2) true points within `radius`.

    Solved exactly with the Hungarian algorithm on distances (pairs farther than `radius`
    are forbidden), so a detection can never count for two true nuclei.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial import cKDTree

    detected = np.asarray(detected, np.float64).reshape(-1, 2)
    truth = np.asarray(truth, np.float64).reshape(-1, 2)
    if len(detected) == 0 or len(truth) == 0:
        return DetectionScore(0, len(truth), len(detected))
    pairs = cKDTree(detected).sparse_distance_matrix(cKDTree(truth), radius, output_type="ndarray")
    if len(pairs) == 0:
        return DetectionScore(0, len(truth), len(detected))
    # Dense cost only over the points that have any candidate partner.
    rows, row_index = np.unique(pairs["i"], return_inverse=True)
    cols, col_index = np.unique(pairs["j"], return_inverse=True)
    forbidden = 1e6
    cost = np.full((len(rows), len(cols)), forbidden)
    cost[row_index, col_index] = pairs["v"]
    r, c = linear_sum_assignment(cost)
    matched = int(np.count_nonzero(cost[r, c] < forbidden))
    return DetectionScore(matched, len(truth), len(detected))
