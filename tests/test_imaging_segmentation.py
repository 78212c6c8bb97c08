"""Nucleus detection and cell propagation on painted fields with known nucleus centres."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from cellstore.imaging.arrays import block_mean, upsample
from cellstore.imaging.evaluation import DetectionScore, match_centres
from cellstore.imaging.phantoms import paint_field
from cellstore.imaging.segmentation import (
    NucleusParams,
    detect_nuclei,
    nuclei_from_centres,
    propagate_cells,
)


@pytest.mark.parametrize(("diameter", "height", "width"), [(20, 1024, 1280), (10, 512, 640)])
def test_detects_planted_nuclei_including_touching_pairs(diameter, height, width):
    score = DetectionScore(0, 0, 0)
    for seed in range(3):
        field = paint_field(
            seed, height=height, width=width, n_cells=60, diameter=diameter, touching_pairs=8
        )
        found = detect_nuclei(field.channels["dapi"], NucleusParams(diameter=diameter))
        score = score + match_centres(np.c_[found.x, found.y], field.centres, radius=5)
    assert score.n_truth == 180
    assert score.recall >= 0.95
    assert score.precision >= 0.95


def test_touching_pair_is_split_into_two_nuclei():
    field = paint_field(0, height=128, width=128, n_cells=2, diameter=20, touching_pairs=1)
    found = detect_nuclei(field.channels["dapi"], NucleusParams(diameter=20))
    assert len(found) == 2
    assert match_centres(np.c_[found.x, found.y], field.centres, radius=3).true_positives == 2


def test_centroids_are_in_full_resolution_pixels():
    image = np.full((200, 240), 100, np.uint16)
    yy, xx = np.mgrid[:200, :240]
    image[(yy - 60.0) ** 2 + (xx - 150.0) ** 2 <= 12**2] = 5000
    found = detect_nuclei(image, NucleusParams(diameter=24))  # working factor 2
    assert len(found) == 1
    assert found.x[0] == pytest.approx(150.0, abs=0.5)
    assert found.y[0] == pytest.approx(60.0, abs=0.5)
    assert found.area[0] == pytest.approx(np.pi * 12**2, rel=0.15)
    assert found.mean_intensity[0] > 4000
    assert not found.touches_border[0]


def test_field_of_pure_noise_has_no_nuclei():
    noise = np.random.default_rng(0).poisson(400, (256, 320)).astype(np.uint16)
    assert len(detect_nuclei(noise, NucleusParams(diameter=10))) == 0


def test_flat_field_has_no_nuclei():
    assert len(detect_nuclei(np.full((64, 64), 7, np.uint16), NucleusParams(diameter=10))) == 0


def test_illumination_correction_rescues_a_dark_corner():
    field = paint_field(3, height=512, width=640, n_cells=60, diameter=12, vignetting=0.9)
    yy, xx = np.mgrid[0:512, 0:640]
    shading = 1 - 0.9 * (((xx - 320) / 320) ** 2 + ((yy - 256) / 256) ** 2) / 2
    params = NucleusParams(diameter=12)
    corrected = detect_nuclei(
        field.channels["dapi"], params, illumination=block_mean(shading, params.factor())
    )
    score = match_centres(np.c_[corrected.x, corrected.y], field.centres, radius=5)
    assert score.recall >= 0.95 and score.precision >= 0.95


def test_illumination_of_the_wrong_shape_is_an_error():
    with pytest.raises(ValueError, match="working image"):
        detect_nuclei(np.ones((64, 64), np.uint16), NucleusParams(diameter=10), np.ones((8, 8)))


def test_nuclei_regrown_from_centres_match_the_detected_ones():
    field = paint_field(2, height=256, width=320, n_cells=25, diameter=20, touching_pairs=3)
    params = NucleusParams(diameter=20)
    found = detect_nuclei(field.channels["dapi"], params)
    labels = nuclei_from_centres(field.channels["dapi"], found.x, found.y, params)
    assert labels.max() == len(found)
    areas = np.bincount(labels.ravel(), minlength=len(found) + 1)[1:]
    assert np.allclose(areas, found.area, rtol=0.25)
    # Each regrown nucleus contains its own centre.
    rows, cols = np.round(found.y).astype(int), np.round(found.x).astype(int)
    assert (labels[rows, cols] == np.arange(1, len(found) + 1)).all()


def test_a_centre_on_background_still_gets_a_region():
    image = np.full((64, 64), 100, np.uint16)
    image[20:30, 20:30] = 4000
    labels = nuclei_from_centres(
        image, np.array([25.0, 55.0]), np.array([25.0, 55.0]), NucleusParams(diameter=10)
    )
    assert (np.bincount(labels.ravel(), minlength=3)[1:] >= 1).all()


def test_cells_contain_their_nucleus_and_stay_within_reach():
    field = paint_field(4, height=256, width=320, n_cells=20, diameter=16)
    params = NucleusParams(diameter=16)
    found = detect_nuclei(field.channels["dapi"], params)
    nuclei = nuclei_from_centres(field.channels["dapi"], found.x, found.y, params)
    cytoplasm = field.channels["tubulin"].astype(np.float32) + field.channels["actin"]
    cells = propagate_cells(nuclei, cytoplasm, max_distance=24)
    inside = nuclei > 0
    assert (cells[inside] == nuclei[inside]).all()
    assert (np.bincount(cells.ravel())[1:] > np.bincount(nuclei.ravel())[1:]).all()
    reach = ndi.distance_transform_edt(nuclei == 0)
    assert reach[cells > 0].max() <= 24


def test_upsampled_function_keeps_constant_and_block_mean_inverts_it():
    assert np.allclose(upsample(np.full((4, 5), 2.5, np.float32), (16, 20)), 2.5)
    smooth = np.add.outer(np.linspace(1, 2, 32), np.linspace(0, 1, 40)).astype(np.float32)
    assert np.allclose(block_mean(upsample(smooth, (128, 160)), 4), smooth, atol=0.01)
