"""Profile post-processing: per-plate control standardisation, DMSO whitening and TVN/CORAL."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# pycytominer's RobustMAD adds this to the MAD so a constant feature does not divide by zero.
ROBUST_EPSILON = 1e-18
# Scale that makes the MAD a consistent estimator of the standard deviation (normal data).
MAD_TO_STD = 1.4826


def _symmetric_function(matrix: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """fn applied to the eigenvalues of a symmetric PSD matrix (negative round-off clipped)."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    return (eigenvectors * fn(eigenvalues)) @ eigenvectors.T


def second_moment(x: np.ndarray) -> np.ndarray:
    """X^T X / n for rows x (n, d) -> (d, d); not centred."""
    if x.shape[0] == 0:
        raise ValueError("second moment of zero rows is undefined")
    return x.T @ x / x.shape[0]


def _require_controls(is_control: np.ndarray, where: str) -> None:
    if not is_control.any():
        raise ValueError(f"no control wells {where}: cannot fit the normalisation")


def standardize_per_group(
    x: np.ndarray,
    groups: np.ndarray,
    is_control: np.ndarray,
    *,
    robust: bool = False,
) -> np.ndarray:
    """Per group (plate), centre and scale every feature by its control wells.

    pycytominer's `normalize(method="standardize"|"robustize", samples=<controls>)` applied
    to each plate: z = (x - mean_ctl) / std_ctl (std with ddof 0; a zero std scales by 1,
    as scikit-learn's StandardScaler does), or robustly z = (x - median_ctl) /
    (1.4826 * MAD_ctl + 1e-18).
    x: (n, d); groups, is_control: (n,). Returns float64 (n, d).
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    for group in np.unique(groups):
        rows = groups == group
        controls = x[rows & is_control]
        _require_controls(rows & is_control, f"in group {str(group)!r}")
        if robust:
            centre = np.median(controls, axis=0)
            mad = np.median(np.abs(controls - centre), axis=0) * MAD_TO_STD
            scale = mad + ROBUST_EPSILON
        else:
            centre = controls.mean(axis=0)
            scale = controls.std(axis=0)
            scale[scale == 0] = 1.0
        out[rows] = (x[rows] - centre) / scale
    return out


def standardize(x: np.ndarray, is_control: np.ndarray) -> np.ndarray:
    """Z-score every feature against all control rows (one group). (n, d) -> (n, d)."""
    return standardize_per_group(x, np.zeros(len(x), dtype=np.int8), is_control)


def fit_whitening(
    controls: np.ndarray, *, regularization: float = 1.0, rotate: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and whitening matrix W (d, d) fitted on control rows (n, d).

    PCA whitening of the centred controls with eigenvalue regulariser λ:
    W = V diag(1 / sqrt(s + λ)), s, V the eigen-decomposition of the control covariance
    (ddof 0). With `rotate`, W = V diag(...) V^T (ZCA): the same whitening rotated back
    so each output column stays aligned with its input feature (cosine similarities and
    Euclidean distances are identical either way).
    """
    if controls.shape[0] == 0:
        raise ValueError("no control wells: cannot fit whitening")
    controls = np.asarray(controls, dtype=np.float64)
    mean = controls.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(second_moment(controls - mean))
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    transform = eigenvectors / np.sqrt(eigenvalues + regularization)
    if rotate:
        transform = transform @ eigenvectors.T
    return mean, transform


def whiten(
    x: np.ndarray, is_control: np.ndarray, *, regularization: float = 1.0, rotate: bool = True
) -> np.ndarray:
    """Centre on the control mean and whiten with the control covariance. (n, d) -> (n, d)."""
    _require_controls(is_control, "to whiten on")
    x = np.asarray(x, dtype=np.float64)
    mean, transform = fit_whitening(x[is_control], regularization=regularization, rotate=rotate)
    return (x - mean) @ transform


def coral(
    x: np.ndarray, batches: np.ndarray, is_control: np.ndarray, *, regularization: float = 1.0
) -> np.ndarray:
    """CORAL alignment of each batch's control second moment onto the pooled one.

    Rows of batch b are multiplied by (C_b + I)^(-1/2) (C_all + λI)^(1/2), where C_b and
    C_all are second-moment matrices of the control rows of batch b and of all batches.
    x: (n, d) already whitened; batches, is_control: (n,).
    """
    _require_controls(is_control, "for CORAL")
    x = np.asarray(x, dtype=np.float64)
    identity = np.eye(x.shape[1])
    target = _symmetric_function(second_moment(x[is_control]) + regularization * identity, np.sqrt)
    out = np.empty_like(x)
    for batch in np.unique(batches):
        rows = batches == batch
        _require_controls(rows & is_control, f"in batch {str(batch)!r}")
        source = _symmetric_function(
            second_moment(x[rows & is_control]) + identity, lambda s: 1.0 / np.sqrt(s)
        )
        out[rows] = x[rows] @ source @ target
    return out


def tvn(
    x: np.ndarray,
    batches: np.ndarray,
    is_control: np.ndarray,
    *,
    regularization: float = 1.0,
    rotate: bool = True,
) -> np.ndarray:
    """Typical variation normalisation: control whitening, then CORAL per batch."""
    whitened = whiten(x, is_control, regularization=regularization, rotate=rotate)
    return coral(whitened, batches, is_control, regularization=regularization)


# The post-processing variants, by the name stored in `postprocessing` columns.
VARIANTS = ("none", "standardize", "robustize", "whitening", "tvn")


def postprocess(
    x: np.ndarray,
    variant: str,
    *,
    plates: np.ndarray,
    batches: np.ndarray,
    is_control: np.ndarray,
    regularization: float = 1.0,
    scale_before_whitening: bool = True,
) -> np.ndarray:
    """One post-processing variant of well profiles x (n, d) -> float64 (n, d).

    none: unchanged. standardize / robustize: per plate against its control wells
    (pycytominer). whitening: control whitening (λ = regularization). tvn: whitening then
    CORAL per batch. With `scale_before_whitening`, whitening and tvn first z-score each
    feature against all control wells: λ is an absolute eigenvalue floor, so features on
    large scales (CellProfiler areas ~1e3) would otherwise dominate and small-scale ones
    (textures ~1e-2) be flattened.
    """
    if variant == "none":
        return np.asarray(x, dtype=np.float64)
    if variant in ("standardize", "robustize"):
        return standardize_per_group(x, plates, is_control, robust=variant == "robustize")
    if variant not in ("whitening", "tvn"):
        raise ValueError(f"unknown post-processing {variant!r}: expected one of {VARIANTS}")
    scaled = standardize(x, is_control) if scale_before_whitening else x
    if variant == "whitening":
        return whiten(scaled, is_control, regularization=regularization)
    return tvn(scaled, batches, is_control, regularization=regularization)
