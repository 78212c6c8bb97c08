"""Cosine 1-nearest-neighbour MoA classification: NSC, NSCB and the batch string."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# NSCB drops these MoAs: their compounds sit in one batch each (Ljosa et al. 2013).
NSCB_EXCLUDED_MOAS = ("Cholesterol-lowering", "Kinase inhibitors")


def batch_string(batches: Iterable[str]) -> str:
    """The batch string of a treatment: its wells' distinct batches, sorted, comma-joined."""
    return ",".join(sorted(set(batches)))


def cosine_similarity(x: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of rows (n, d) -> (n, n); NaN where a row has zero norm."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = x / norms[:, None]
    unit[norms == 0] = np.nan
    return unit @ unit.T


def candidate_mask(compounds: np.ndarray, batches: np.ndarray | None = None) -> np.ndarray:
    """(n, n) True where column j may answer query i: another compound (and batch string)."""
    compounds = np.asarray(compounds)
    mask = compounds[:, None] != compounds[None, :]
    if batches is not None:
        batches = np.asarray(batches)
        mask &= batches[:, None] != batches[None, :]
    return mask


@dataclass(frozen=True)
class Neighbors:
    """Each query's nearest allowed candidate: row index (-1 if none) and similarity."""

    index: np.ndarray  # (n,) int
    similarity: np.ndarray  # (n,) float, NaN where index is -1


def nearest_neighbors(x: np.ndarray, mask: np.ndarray) -> Neighbors:
    """Cosine 1-NN of every row among the columns `mask` allows.

    Zero-norm rows neither query nor answer (their index is -1). Ties go to the lowest row
    index, so sort rows by (compound, concentration) to break ties the SQL stages' way.
    """
    similarity = cosine_similarity(x)
    allowed = mask & ~np.isnan(similarity)
    scores = np.where(allowed, similarity, -np.inf)
    index = np.argmax(scores, axis=1)
    found = allowed[np.arange(len(index)), index]
    return Neighbors(
        index=np.where(found, index, -1),
        similarity=np.where(found, scores[np.arange(len(index)), index], np.nan),
    )


def accuracy(neighbors: Neighbors, labels: np.ndarray) -> float:
    """Fraction of queries whose neighbour has their label; a query without one is a miss."""
    labels = np.asarray(labels)
    found = neighbors.index >= 0
    correct = found & (labels[np.where(found, neighbors.index, 0)] == labels)
    return float(correct.mean()) if len(labels) else float("nan")


def average_precision(
    similarity: np.ndarray, is_candidate: np.ndarray, is_positive: np.ndarray
) -> float:
    """Average precision of one query's ranking (copairs' definition); NaN if no positive.

    similarity, is_candidate, is_positive: (n,) over all rows. Candidates are ranked by
    similarity, ties by row index; AP = mean over positives of the precision at their rank.
    """
    rows = np.flatnonzero(is_candidate & ~np.isnan(similarity))
    ranked = rows[np.argsort(-similarity[rows], kind="stable")]
    hits = is_positive[ranked]
    if not hits.any():
        return float("nan")
    precision_at_rank = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at_rank[hits].mean())


def mean_average_precision(x: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> float:
    """Mean over queries of the AP of retrieving same-label candidates among `mask`'s.

    With `candidate_mask(compounds)` this is copairs' mAP with positives = same MoA,
    different compound, and negatives = different MoA. Queries without positives are skipped.
    """
    labels = np.asarray(labels)
    similarity = cosine_similarity(x)
    scores = [average_precision(similarity[i], mask[i], labels == labels[i]) for i in range(len(x))]
    scores = [s for s in scores if not np.isnan(s)]
    return float(np.mean(scores)) if scores else float("nan")


@dataclass(frozen=True)
class MoaScores:
    """NSC / NSCB accuracies (fractions), their drop, query counts and mAP (NSC rules)."""

    nsc: float
    nscb: float
    drop: float
    n_nsc: int
    n_nscb: int
    map: float


def evaluate_moa(
    x: np.ndarray,
    compounds: np.ndarray,
    moas: np.ndarray,
    batches: np.ndarray,
    *,
    nscb_excluded_moas: Iterable[str] = NSCB_EXCLUDED_MOAS,
) -> MoaScores:
    """NSC, NSCB, drop and mAP of treatment profiles x (n, d), one row per treatment.

    NSC: candidates are treatments of other compounds. NSCB: the excluded MoAs are removed
    first, and candidates must also differ in batch string.
    """
    compounds, moas, batches = (np.asarray(a) for a in (compounds, moas, batches))
    x = np.asarray(x, dtype=np.float64)
    nsc_mask = candidate_mask(compounds)
    nsc = accuracy(nearest_neighbors(x, nsc_mask), moas)
    kept = ~np.isin(moas, list(nscb_excluded_moas))
    nscb_mask = candidate_mask(compounds[kept], batches[kept])
    nscb = accuracy(nearest_neighbors(x[kept], nscb_mask), moas[kept])
    return MoaScores(
        nsc=nsc,
        nscb=nscb,
        drop=nsc - nscb,
        n_nsc=len(x),
        n_nscb=int(kept.sum()),
        map=mean_average_precision(x, moas, nsc_mask),
    )
