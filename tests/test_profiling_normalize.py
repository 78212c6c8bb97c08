"""Post-processing: per-plate standardisation, whitening and TVN against numpy/scipy references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from sklearn.preprocessing import StandardScaler

from cellstore.profiling.neighbors import cosine_similarity
from cellstore.profiling.normalize import (
    VARIANTS,
    coral,
    fit_whitening,
    postprocess,
    standardize,
    standardize_per_group,
    tvn,
    whiten,
)


@pytest.fixture
def wells() -> dict[str, np.ndarray]:
    """60 wells x 8 correlated features on 3 plates in 2 batches, 8 control wells a plate."""
    rng = np.random.default_rng(7)
    n, d = 60, 8
    mixing = rng.normal(size=(d, d)) * np.array([100.0, 10, 1, 1, 0.1, 0.1, 0.01, 0.01])
    plates = np.repeat(np.array(["P1", "P2", "P3"]), n // 3)
    batches = np.where(plates == "P3", "Week2", "Week1")
    shift = np.where(batches == "Week2", 3.0, 0.0)[:, None]
    x = (rng.normal(size=(n, d)) + shift) @ mixing + rng.normal(size=d)
    is_control = np.tile(np.arange(n // 3) < 8, 3)
    return {"x": x, "plates": plates, "batches": batches, "is_control": is_control}


def inverse_sqrt(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.inv(np.real(scipy.linalg.sqrtm(matrix)))


def test_standardize_per_plate_matches_standard_scaler_fitted_on_plate_controls(wells):
    x, plates, is_control = wells["x"], wells["plates"], wells["is_control"]
    x = x.copy()
    x[plates == "P2", 3] = 5.0  # a constant feature on one plate: scaled by 1, like sklearn
    result = standardize_per_group(x, plates, is_control)
    for plate in np.unique(plates):
        rows = plates == plate
        scaler = StandardScaler().fit(x[rows & is_control])
        np.testing.assert_allclose(result[rows], scaler.transform(x[rows]), atol=1e-10)


def test_robustize_per_plate_uses_median_and_normal_scaled_mad(wells):
    x, plates, is_control = wells["x"], wells["plates"], wells["is_control"]
    result = standardize_per_group(x, plates, is_control, robust=True)
    for plate in np.unique(plates):
        rows = plates == plate
        controls = x[rows & is_control]
        mad = scipy.stats.median_abs_deviation(controls, axis=0, scale="normal")
        expected = (x[rows] - np.median(controls, axis=0)) / (mad + 1e-18)
        np.testing.assert_allclose(result[rows], expected, rtol=1e-4)


def test_standardize_needs_controls_on_every_plate(wells):
    is_control = wells["is_control"] & (wells["plates"] != "P2")
    with pytest.raises(ValueError, match="no control wells in group 'P2'"):
        standardize_per_group(wells["x"], wells["plates"], is_control)


def test_whitening_equals_regularised_inverse_square_root_of_control_covariance(wells):
    x, is_control = wells["x"], wells["is_control"]
    controls = x[is_control]
    covariance = np.cov(controls.T, ddof=0)
    expected = (x - controls.mean(axis=0)) @ inverse_sqrt(covariance + 1.0 * np.eye(x.shape[1]))
    np.testing.assert_allclose(whiten(x, is_control), expected, atol=1e-8)


def test_pca_and_zca_whitening_give_identical_cosine_similarities(wells):
    x, is_control = wells["x"], wells["is_control"]
    pca = whiten(x, is_control, rotate=False)
    zca = whiten(x, is_control, rotate=True)
    np.testing.assert_allclose(cosine_similarity(pca), cosine_similarity(zca), atol=1e-10)


def test_whitened_controls_have_shrunk_identity_covariance(wells):
    x, is_control = wells["x"], wells["is_control"]
    _, transform = fit_whitening(x[is_control], regularization=1.0, rotate=False)
    whitened = whiten(x, is_control, rotate=False)[is_control]
    eigenvalues = np.linalg.eigvalsh(np.cov(x[is_control].T, ddof=0))
    np.testing.assert_allclose(whitened.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(
        np.cov(whitened.T, ddof=0), np.diag(eigenvalues / (eigenvalues + 1.0)), atol=1e-8
    )
    assert transform.shape == (x.shape[1], x.shape[1])


def test_coral_matches_per_batch_reference(wells):
    x, batches, is_control = wells["x"], wells["batches"], wells["is_control"]
    whitened = whiten(standardize(x, is_control), is_control)
    d = x.shape[1]
    regularization = 0.5

    def moment(rows: np.ndarray) -> np.ndarray:
        return rows.T @ rows / len(rows)

    target = np.real(scipy.linalg.sqrtm(moment(whitened[is_control]) + regularization * np.eye(d)))
    expected = np.empty_like(whitened)
    for batch in np.unique(batches):
        rows = batches == batch
        source = inverse_sqrt(moment(whitened[rows & is_control]) + np.eye(d))
        expected[rows] = whitened[rows] @ source @ target
    result = coral(whitened, batches, is_control, regularization=regularization)
    np.testing.assert_allclose(result, expected, atol=1e-8)


def test_tvn_is_whitening_then_coral(wells):
    x, batches, is_control = wells["x"], wells["batches"], wells["is_control"]
    expected = coral(whiten(x, is_control), batches, is_control)
    np.testing.assert_allclose(tvn(x, batches, is_control), expected, atol=1e-10)


def test_tvn_with_one_batch_equals_whitening(wells):
    x, is_control = wells["x"], wells["is_control"]
    one_batch = np.full(len(x), "Week1")
    np.testing.assert_allclose(tvn(x, one_batch, is_control), whiten(x, is_control), atol=1e-8)


def test_tvn_removes_a_batch_shift_between_control_means(wells):
    x, batches, is_control = wells["x"], wells["batches"], wells["is_control"]
    before = standardize(x, is_control)
    after = tvn(x, batches, is_control)

    def control_gap(values: np.ndarray) -> float:
        means = [values[(batches == b) & is_control].mean(axis=0) for b in ("Week1", "Week2")]
        return float(np.linalg.norm(means[0] - means[1]) / np.linalg.norm(values[is_control]))

    assert control_gap(after) < control_gap(before)


def test_coral_needs_controls_in_every_batch(wells):
    is_control = wells["is_control"] & (wells["batches"] == "Week1")
    with pytest.raises(ValueError, match="no control wells in batch 'Week2'"):
        coral(wells["x"], wells["batches"], is_control)


def test_postprocess_scales_before_whitening_only_when_asked(wells):
    x, is_control = wells["x"], wells["is_control"]
    common = {"plates": wells["plates"], "batches": wells["batches"], "is_control": is_control}
    scaled = postprocess(x, "whitening", **common)
    raw = postprocess(x, "whitening", scale_before_whitening=False, **common)
    np.testing.assert_allclose(scaled, whiten(standardize(x, is_control), is_control))
    np.testing.assert_allclose(raw, whiten(x, is_control))
    assert set(VARIANTS) == {"none", "standardize", "robustize", "whitening", "tvn"}
    np.testing.assert_array_equal(postprocess(x, "none", **common), x)
    with pytest.raises(ValueError, match="unknown post-processing 'zca'"):
        postprocess(x, "zca", **common)
