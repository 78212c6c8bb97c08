"""The calibrated phenomena of the generator and its knobs (batch strength, heterogeneity)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import REPO

from cellstore.profiling.neighbors import evaluate_moa
from cellstore.profiling.normalize import postprocess
from cellstore.synth import generate
from cellstore.synth.demo import DEMO
from cellstore.synth.phenotypes import (
    AXES,
    AXIS_INDEX,
    moa_vector,
    week_effects,
)
from cellstore.synth.plates import plan
from cellstore.synth.proxy import well_descriptors


def _models(heterogeneity: float = 1.0):
    layout = plan(replace(DEMO, heterogeneity=heterogeneity))
    return layout.models


def test_compounds_are_the_same_in_every_seed():
    # A seed is a replicate experiment of the same compounds: only Weeks, wells, cells vary.
    first, second = plan(replace(DEMO, seed=0)).models, plan(replace(DEMO, seed=7)).models
    assert first.keys() == second.keys()
    for name, model in first.items():
        assert np.array_equal(model.delta, second[name].delta)
        assert model.ec50 == second[name].ec50


def test_heterogeneity_spreads_compounds_of_one_moa():
    def spread(models) -> float:
        # mean distance of annotated compounds' Δ from their MoA's Δ, relative to its norm
        gaps = [
            np.linalg.norm(m.delta - moa_vector(m.moa)) / np.linalg.norm(moa_vector(m.moa))
            for m in models.values()
            if m.is_annotated and m.moa != "DMSO"
        ]
        return float(np.mean(gaps))

    assert spread(_models(0.0)) == pytest.approx(0.0)
    assert 0 < spread(_models(1.0)) < spread(_models(2.0))


def test_batch_strength_scales_the_week_effects_on_phenotypes():
    moa = "Eg5 inhibitors"
    delta = moa_vector(moa)
    calm = week_effects(0, "Week3", batch_strength=0.0)
    assert np.array_equal(calm.response(delta, moa), delta)
    assert not calm.offset.any()
    usual, strong = week_effects(0, "Week3", 1.0), week_effects(0, "Week3", 2.0)
    moved = np.linalg.norm(usual.response(delta, moa) - delta)
    assert moved > 0
    assert np.linalg.norm(strong.response(delta, moa) - delta) > 1.5 * moved
    # The interaction changes the response, it never makes fields denser.
    density = AXIS_INDEX["density"]
    assert abs(usual.response(delta, moa)[density] - delta[density]) < 1e-12
    # Imaging effects do not depend on the knob (per-plate normalisation removes them).
    assert np.array_equal(usual.gain, calm.gain) and np.array_equal(
        usual.background, calm.background
    )
    assert len(usual.offset) == len(AXES)


def test_subtle_phenotypes_lose_more_of_their_identity_across_weeks():
    def cross_week_cosine(moa: str) -> float:
        delta = moa_vector(moa)
        a = week_effects(0, "Week3").response(delta, moa)
        b = week_effects(0, "Week9").response(delta, moa)
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    # dramatic phenotypes (‖Δ‖ ≈ 3.5-4.3) keep their direction; subtle ones (≈ 0.9-1.7) do not
    dramatic = [cross_week_cosine(m) for m in ("Eg5 inhibitors", "Actin disruptors")]
    subtle = [cross_week_cosine(m) for m in ("Protein synthesis", "DNA damage")]
    assert min(dramatic) > 0.8 > max(subtle), (dramatic, subtle)


def test_compounds_of_one_moa_share_their_week_response():
    # Two compounds of one MoA imaged in the same Week move the same way; across Weeks
    # they do not (what makes NSC easier than NSCB).
    moa = "DNA damage"
    first = moa_vector(moa) * 1.1
    second = moa_vector(moa) * 0.9
    week3, week9 = week_effects(0, "Week3"), week_effects(0, "Week9")
    same = week3.response(first, moa) - first - (week3.response(second, moa) - second)
    across = week3.response(first, moa) - first - (week9.response(second, moa) - second)
    assert np.linalg.norm(across) > 3 * np.linalg.norm(same)


def test_knobs_are_validated(tmp_path):
    with pytest.raises(ValueError, match="batch_strength"):
        generate(tmp_path, plates=["Week5_29301"], scale=0.05, batch_strength=-1)
    with pytest.raises(ValueError, match="heterogeneity"):
        generate(tmp_path, plates=["Week5_29301"], scale=0.05, heterogeneity=-0.5)


def test_knobs_enter_the_fingerprint():
    assert replace(DEMO, batch_strength=2.0).fingerprint() != DEMO.fingerprint()
    assert replace(DEMO, heterogeneity=0.5).fingerprint() != DEMO.fingerprint()


def _nscb(batch_strength: float, seed: int) -> float:
    """NSCB of standardized phenotype-model profiles (no pixels) on the demo layout."""
    wells = well_descriptors(replace(DEMO, seed=seed, batch_strength=batch_strength, density=0.3))
    x = postprocess(
        wells.values,
        "standardize",
        plates=wells.plate,
        batches=wells.batch,
        is_control=wells.compound == "DMSO",
    )
    keys = sorted(
        {
            (c, k)
            for c, k, m in zip(wells.compound, wells.concentration, wells.moa, strict=True)
            if m
        }
        - {("DMSO", 0.0)}
    )
    rows, compounds, moas, batches = [], [], [], []
    for compound, concentration in keys:
        chosen = (wells.compound == compound) & (wells.concentration == concentration)
        rows.append(np.median(x[chosen], axis=0))
        compounds.append(compound)
        moas.append(wells.moa[chosen][0])
        batches.append(",".join(sorted(set(wells.batch[chosen]))))
    scores = evaluate_moa(np.array(rows), np.array(compounds), np.array(moas), np.array(batches))
    return scores.nscb


def test_stronger_batch_effects_lower_nscb():
    # The demo layout from the phenotype model directly (seconds, no rendering): with the
    # Week effects tripled, treatments must find their MoA in another Week less often.
    calm = np.mean([_nscb(0.0, seed) for seed in (0, 1)])
    strong = np.mean([_nscb(3.0, seed) for seed in (0, 1)])
    assert strong < calm - 0.1, (calm, strong)


def _demo_fingerprint_of(package_root) -> str:
    """DEMO.fingerprint() as computed by the cellstore package found under `package_root`."""
    code = "from cellstore.synth.demo import DEMO; print(DEMO.fingerprint())"
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(package_root)!r}); {code}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_a_generator_constant_changed_without_a_version_bump_changes_the_fingerprint(tmp_path):
    """Cached sources (the demo, bench_accuracy's) are reused by fingerprint: a tuned
    constant must not serve images generated before it changed."""
    tuned, reworded = tmp_path / "tuned", tmp_path / "reworded"
    for root in (tuned, reworded):
        shutil.copytree(REPO / "cellstore", root / "cellstore")
    phenotypes = tuned / "cellstore" / "synth" / "phenotypes.py"
    text = phenotypes.read_text()
    assert "\nSTAIN_NOISE = 0.15\n" in text
    phenotypes.write_text(text.replace("\nSTAIN_NOISE = 0.15\n", "\nSTAIN_NOISE = 0.16\n"))
    demo = reworded / "cellstore" / "synth" / "demo.py"  # caching code, not the generator
    demo.write_text(demo.read_text() + "\n# a comment\n")
    original = _demo_fingerprint_of(REPO)
    assert original == DEMO.fingerprint()
    assert _demo_fingerprint_of(tuned) != original
    assert _demo_fingerprint_of(reworded) == original
