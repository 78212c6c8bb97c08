"""The synthetic plate generator: layout, determinism, ground truth, phenotypes, demo cache."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile

from cellstore.sources.bbbc021 import IMAGE_COLUMNS, read_moa
from cellstore.synth import demo as demo_module
from cellstore.synth import generate
from cellstore.synth.cells import sample_field
from cellstore.synth.phenotypes import (
    AXES,
    AXIS_INDEX,
    MOA_EFFECTS,
    STAIN_NOISE,
    moa_vector,
    week_effects,
    well_offset,
    well_stain,
)
from cellstore.synth.plates import (
    SynthParams,
    _read_fields,
    _select,
    shipped_metadata,
)
from cellstore.synth.render import Imaging, field_shape, render_field

SMALL = "Week5_29301"  # 12 annotated wells
OTHER = "Week10_40111"


def tiny(out: Path, plates=(SMALL,), seed=0) -> dict:
    return generate(out, plates=list(plates), sites=1, scale=0.05, wells="annotated", seed=seed)


def pixels(source: Path) -> dict[str, np.ndarray]:
    return {
        str(path.relative_to(source)): tifffile.imread(path)
        for path in sorted(source.glob("Week*/*/*.tif"))
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "a"
    return out, tiny(out)


def test_layout_matches_the_real_source(small):
    source, summary = small
    text = (source / "BBBC021_v1_image.csv").read_bytes().decode()
    assert "\r\n" in text and not text.endswith("\n")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == IMAGE_COLUMNS
    assert len(rows) - 1 == summary["n_fields"] == 12
    moa = (source / "BBBC021_v1_moa.csv").read_bytes()
    assert moa == (shipped_metadata() / "BBBC021_v1_moa.csv").read_bytes()
    for row in rows[1:]:
        cell = dict(zip(rows[0], row, strict=True))
        assert cell["Image_PathName_DAPI"] == f"Week5/{SMALL}"
        for stem, wave in (("DAPI", 1), ("Tubulin", 2), ("Actin", 4)):
            path = source / cell[f"Image_PathName_{stem}"] / cell[f"Image_FileName_{stem}"]
            image = tifffile.imread(path)
            assert f"_w{wave}" in path.name
            assert image.dtype == np.uint16 and image.shape == field_shape(0.05) == (51, 64)
    assert summary["n_images"] == 36
    assert json.loads((source / "cellstore_synth.json").read_text())["n_fields"] == 12


def test_same_seed_same_pixels_other_seed_other_pixels(small, tmp_path: Path):
    source, _ = small
    again = tmp_path / "again"
    tiny(again)
    first, second = pixels(source), pixels(again)
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert pq.read_table(source / "ground_truth/nuclei.parquet").equals(
        pq.read_table(again / "ground_truth/nuclei.parquet")
    )
    other = tmp_path / "other"
    tiny(other, seed=1)
    assert not all(np.array_equal(first[k], v) for k, v in pixels(other).items())


def test_a_plate_renders_the_same_alone_or_with_others(small, tmp_path: Path):
    source, _ = small
    both = tmp_path / "both"
    tiny(both, plates=(SMALL, OTHER))
    alone, together = pixels(source), pixels(both)
    assert alone.keys() < together.keys()
    assert all(np.array_equal(alone[k], together[k]) for k in alone)


def test_ground_truth_describes_the_written_images(small):
    source, summary = small
    nuclei = pq.read_table(source / "ground_truth/nuclei.parquet").to_pandas()
    wells = pq.read_table(source / "ground_truth/wells.parquet").to_pandas()
    assert len(nuclei) == summary["n_nuclei"] > 0
    height, width = field_shape(0.05)
    inside = (nuclei.x >= 0) & (nuclei.x < width) & (nuclei.y >= 0) & (nuclei.y < height)
    assert inside.mean() > 0.97  # the rest: second nuclei of cells at the edge
    assert nuclei[~inside].touches_border.all()
    assert nuclei.image_id.str.startswith(SMALL + "_").all()
    assert len(wells) == 12 and wells.is_annotated.all()
    annotations = {
        (m["compound"], m["concentration"]): m["moa"] for m in read_moa(shipped_metadata())
    }
    for row in wells.itertuples():
        assert row.moa == annotations[(row.compound, row.concentration)]
    assert {f"z_{axis}" for axis in AXES} <= set(wells.columns)
    assert (wells[wells.compound == "DMSO"].effect == 0).all()


def test_invalid_parameters_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown plate"):
        generate(tmp_path, plates=["Week99_1"], scale=0.05)
    with pytest.raises(ValueError, match="wells"):
        generate(tmp_path, wells="some", scale=0.05)
    with pytest.raises(ValueError, match="scale"):
        generate(tmp_path, scale=0)


def test_demo_covers_every_annotated_treatment_in_every_week():
    fields, _ = _read_fields(shipped_metadata(), Path("/nonexistent"))
    annotations = {
        (m["compound"], m["concentration"]): m["moa"] for m in read_moa(shipped_metadata())
    }
    chosen = _select(fields, demo_module.DEMO, annotations)
    assert len(chosen) == 962  # one site of each annotated well
    assert len({f.plate for f in chosen}) == 55
    assert len({f.batch for f in chosen}) == 10
    assert len({(f.compound, f.concentration) for f in chosen}) == 104


def test_demo_source_is_generated_once_and_replaced_when_its_parameters_change(
    tmp_path: Path, monkeypatch
):
    monkeypatch.setattr(
        demo_module, "DEMO", SynthParams(plates=(SMALL,), sites=1, scale=0.05, wells="annotated")
    )
    first = demo_module.demo_source(tmp_path)
    assert first == tmp_path / "demo_source"
    stamp = (first / "cellstore_synth.json").stat().st_mtime_ns
    assert demo_module.demo_source(tmp_path) == first
    assert (first / "cellstore_synth.json").stat().st_mtime_ns == stamp  # reused
    monkeypatch.setattr(
        demo_module,
        "DEMO",
        SynthParams(plates=(SMALL,), sites=1, scale=0.05, wells="annotated", seed=3),
    )
    demo_module.demo_source(tmp_path)
    summary = json.loads((first / "cellstore_synth.json").read_text())
    assert summary["params"]["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo_source", "demo_source.lock"]


def test_week_effects_differ_between_weeks_a_seed_redraws_only_part_of_the_imaging():
    a, b = week_effects(0, "Week1"), week_effects(0, "Week2")
    assert not np.allclose(a.gain, b.gain) and not np.allclose(a.offset, b.offset)
    assert not np.allclose(a.response_mixing, b.response_mixing)
    assert not np.allclose(a.moa_direction("DNA damage"), b.moa_direction("DNA damage"))
    assert not np.allclose(a.moa_direction("DNA damage"), a.moa_direction("DNA replication"))
    again, replicate = week_effects(0, "Week1"), week_effects(1, "Week1")
    assert np.array_equal(again.offset, a.offset) and np.array_equal(again.gain, a.gain)
    # A seed is a replicate of the same screen: the Week's cells sit and respond the same
    # way, and its microscope set-up is mostly the same: a seed redraws a share of it.
    assert np.array_equal(replicate.offset, a.offset)
    assert np.array_equal(replicate.response_mixing, a.response_mixing)
    assert not np.allclose(replicate.gain, a.gain)
    assert not np.allclose(replicate.background, a.background)
    across_seeds = np.log([week_effects(seed, "Week1").gain for seed in range(30)])
    across_weeks = np.log([week_effects(0, f"Week{w}").gain for w in range(1, 31)])
    assert across_seeds.std(axis=0).max() < 0.5 * across_weeks.std(axis=0).min()


def test_wells_vary_in_seeding_density_and_staining_together_across_traits():
    from scipy.stats import spearmanr

    wells = [f"{row}{col:02d}" for row in "BCDEFG" for col in range(2, 12)]
    offsets = np.array([well_offset(0, "Week1_22123", well) for well in wells])
    density = offsets[:, AXIS_INDEX["density"]]
    # Crowded wells hold smaller cells with fewer stress fibres, DMSO wells as much as any.
    assert spearmanr(density, offsets[:, AXIS_INDEX["cell_size"]])[0] < -0.4
    assert spearmanr(density, offsets[:, AXIS_INDEX["actin_fibres"]])[0] < -0.3
    assert 0.1 < density.std() < 0.4
    stains = np.log([well_stain(0, "Week1_22123", well) for well in wells])
    spread = stains.std(axis=0)
    assert np.all(np.abs(spread - STAIN_NOISE) < 0.05) and spread.min() > 0.05
    assert np.array_equal(well_stain(0, "Week1_22123", "B02"), well_stain(0, "Week1_22123", "B02"))
    assert not np.allclose(well_stain(1, "Week1_22123", "B02"), well_stain(0, "Week1_22123", "B02"))


# --- the phenotype model, checked on rendered fields (planted signal) ----------------------

IMAGING = Imaging(np.ones(3), np.full(3, 200.0), 0.0, (0.5, 0.5), (0.0, 0.0))


def field(moa: str, effect: float, seed: int, scale: float = 0.5):
    rng = np.random.default_rng(seed)
    delta = moa_vector(moa)
    cells = sample_field(rng, np.zeros(len(AXES)), delta, effect)
    return cells, render_field(cells, scale, IMAGING, rng)


def test_saturated_moas_change_what_they_should():
    dmso = [field("DMSO", 0.0, s) for s in range(3)]

    def mean_radius(fields):
        return np.mean([c.nucleus_radius[~c.is_mitotic].mean() for c, _ in fields])

    aurora = [field("Aurora kinase inhibitors", 1.0, s) for s in range(3)]
    assert mean_radius(aurora) > 1.15 * mean_radius(dmso)
    stabilised = [field("Microtubule stabilizers", 1.0, s) for s in range(3)]
    # Bright bundles: the upper tail of tubulin rises.
    assert np.mean([np.percentile(im[1], 99) for _, im in stabilised]) > 1.3 * np.mean(
        [np.percentile(im[1], 99) for _, im in dmso]
    )
    eg5 = [field("Eg5 inhibitors", 1.0, s) for s in range(3)]
    assert np.mean([c.is_mitotic.mean() for c, _ in eg5]) > 0.4
    assert np.mean([c.is_mitotic.mean() for c, _ in dmso]) < 0.1
    weak = [field("Eg5 inhibitors", 0.05, s) for s in range(3)]
    assert np.mean([c.is_mitotic.mean() for c, _ in weak]) < 0.15  # low dose ≈ DMSO


def detect_nuclei(dapi: np.ndarray, radius: float) -> np.ndarray:
    """A plain distance-transform watershed (what a user of the field would write)."""
    from scipy import ndimage as ndi
    from skimage import feature, filters, measure, segmentation

    smooth = filters.gaussian(dapi.astype(float), 1.0, preserve_range=True)
    mask = ndi.binary_fill_holes(smooth > filters.threshold_otsu(smooth))
    labels = measure.label(mask)
    distance = ndi.distance_transform_edt(mask)
    peaks = feature.peak_local_max(
        distance, min_distance=max(2, int(0.6 * radius)), labels=labels, exclude_border=False
    )
    markers = np.zeros(distance.shape, int)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    regions = measure.regionprops(segmentation.watershed(-distance, markers, mask=mask))
    area = np.pi * radius**2
    return np.array([r.centroid[::-1] for r in regions if r.area >= 0.25 * area]).reshape(-1, 2)


def test_nuclei_are_detectable_at_the_demo_scale():
    """Recall and precision ≥ 0.95 at 5 px for every MoA at full effect (scale 0.5)."""
    from scipy.optimize import linear_sum_assignment

    scale = 0.5
    found = total = detected = 0
    for moa in ["DMSO", *sorted(MOA_EFFECTS)]:
        cells, images = field(moa, 0.0 if moa == "DMSO" else 1.0, seed=7, scale=scale)
        truth = np.column_stack([cells.nucleus_x, cells.nucleus_y]) * scale
        spots = detect_nuclei(images[0], 15 * scale)
        distance = np.hypot(*(truth[:, None, :] - spots[None, :, :]).transpose(2, 0, 1))
        rows, cols = linear_sum_assignment(distance)
        found += int((distance[rows, cols] <= 5).sum())
        total += len(truth)
        detected += len(spots)
    assert found / total >= 0.95
    assert found / detected >= 0.95
