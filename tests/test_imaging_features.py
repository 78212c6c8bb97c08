"""Per-cell handcrafted features against scikit-image / numpy oracles, on painted cells."""

from __future__ import annotations

import re

import numpy as np
import pytest
from skimage.measure import regionprops_table

from cellstore.imaging.features import TextureParams, feature_names, measure_cells

CHANNELS = ("DAPI", "Tubulin", "Actin")


def _two_cells() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Cell 1: small round nucleus in a small cell; cell 2: big nucleus in a big cell."""
    yy, xx = np.mgrid[0:80, 0:120]
    nuclei = np.zeros((80, 120), np.int32)
    cells = np.zeros((80, 120), np.int32)
    cells[(yy - 40) ** 2 + (xx - 30) ** 2 <= 20**2] = 1
    cells[(yy - 40) ** 2 + (xx - 85) ** 2 <= 30**2] = 2
    nuclei[(yy - 40) ** 2 + (xx - 30) ** 2 <= 6**2] = 1
    nuclei[(yy - 40) ** 2 + (xx - 85) ** 2 <= 12**2] = 2
    rng = np.random.default_rng(0)
    images = {
        "DAPI": np.where(nuclei > 0, 0.6, 0.05) + rng.normal(0, 0.01, nuclei.shape),
        "Tubulin": np.where(cells > 0, 0.3, 0.02) + rng.normal(0, 0.05, nuclei.shape),
        "Actin": np.where(cells == 2, 0.5, 0.1) + rng.normal(0, 0.02, nuclei.shape),
    }
    return images, nuclei, cells


def _measure() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    images, nuclei, cells = _two_cells()
    limits = {name: (0.0, 1.0) for name in CHANNELS}
    return (
        measure_cells(images, nuclei, cells, 2, TextureParams(limits, 2, 8)),
        images,
        nuclei,
        cells,
    )


def test_at_least_50_cellprofiler_style_float32_features():
    features, *_ = _measure()
    names = feature_names(CHANNELS)
    assert list(features) == names
    assert len(names) >= 50
    assert all(re.match(r"^(Nuclei|Cells|Cytoplasm)_[A-Za-z]+_", name) for name in names)
    assert "Nuclei_AreaShape_Area" in names
    assert "Cells_Intensity_MeanIntensity_Tubulin" in names
    assert all(v.dtype == np.float32 and v.shape == (2,) for v in features.values())
    assert all(np.isfinite(v).all() for v in features.values())


def test_shape_and_intensity_match_oracles():
    features, images, nuclei, cells = _measure()
    props = regionprops_table(nuclei, properties=("area", "perimeter", "solidity"))
    assert np.allclose(features["Nuclei_AreaShape_Area"], props["area"])
    assert np.allclose(features["Nuclei_AreaShape_Perimeter"], props["perimeter"], rtol=1e-5)
    # Digital discs are convex: solidity 1 here, a little less in skimage (see shape.py).
    assert np.allclose(features["Nuclei_AreaShape_Solidity"], 1.0)
    assert np.all(props["solidity"] < 1.0) and np.allclose(props["solidity"], 1.0, atol=0.1)
    cytoplasm = np.where(nuclei > 0, 0, cells)
    for label in (1, 2):
        tubulin = images["Tubulin"][cytoplasm == label]
        index = label - 1
        assert features["Cytoplasm_AreaShape_Area"][index] == tubulin.size
        assert features["Cytoplasm_Intensity_MeanIntensity_Tubulin"][index] == pytest.approx(
            tubulin.mean(), rel=1e-5
        )
        assert features["Cytoplasm_Intensity_StdIntensity_Tubulin"][index] == pytest.approx(
            tubulin.std(), rel=1e-4
        )
        assert features["Cytoplasm_Intensity_MaxIntensity_Tubulin"][index] == pytest.approx(
            tubulin.max(), rel=1e-6
        )
        dapi, actin = images["DAPI"][cells == label], images["Actin"][cells == label]
        assert features["Cells_Correlation_Correlation_DAPI_Actin"][index] == pytest.approx(
            np.corrcoef(dapi, actin)[0, 1], abs=1e-5
        )


def test_planted_differences_show_up():
    features, *_ = _measure()
    assert features["Nuclei_AreaShape_Area"][1] > 3 * features["Nuclei_AreaShape_Area"][0]
    assert (
        features["Cells_Intensity_MeanIntensity_Actin"][1]
        > 3 * (features["Cells_Intensity_MeanIntensity_Actin"][0])
    )
    # Round objects: form factor near 1, eccentricity near 0.
    assert np.all(features["Nuclei_AreaShape_FormFactor"] > 0.8)
    assert np.all(features["Cells_AreaShape_Eccentricity"] < 0.2)
    assert features["Cells_Neighbors_NumberOfNeighbors_Adjacent"].tolist() == [0.0, 0.0]


def test_a_cell_without_cytoplasm_gets_zeros_not_nan():
    images, nuclei, _ = _two_cells()
    limits = {name: (0.0, 1.0) for name in CHANNELS}
    features = measure_cells(images, nuclei, nuclei.copy(), 2, TextureParams(limits, 1, 8))
    assert features["Cytoplasm_AreaShape_Area"].tolist() == [0.0, 0.0]
    assert features["Cytoplasm_Intensity_MeanIntensity_DAPI"].tolist() == [0.0, 0.0]
    assert all(np.isfinite(v).all() for v in features.values())
