"""The build decision without a warehouse: every rule of `decide`, and fingerprints."""

from __future__ import annotations

import json

from cellstore.engine.decide import (
    CODE_KEY,
    WATCH_KEY,
    Action,
    StageFacts,
    Status,
    decide,
    definition_fingerprint,
    describe_code_change,
)

CROPS = StageFacts(
    name="crops",
    outputs=("crops", "crops_rejected"),
    inputs=("images", "nuclei", "illumination"),
    incremental_input="images",
    partitions={"nuclei": "image_id", "illumination": "plate"},
)
TOTAL = StageFacts(name="total", outputs=("total",), inputs=("doubled",))
EMBED = StageFacts(
    name="embeddings",
    outputs=("embeddings",),
    inputs=("crops", "encoder"),
    incremental_input="crops",
    artifact_inputs=frozenset({"encoder"}),
)


def last_run(inputs: dict, definition_fp: str = "d1") -> dict:
    return {"definition_fp": definition_fp, "inputs": json.dumps(inputs)}


def run(stage, last, inputs, *, fp="d1", existing=None, full=False, changed=()):
    existing = set(stage.outputs) if existing is None else existing
    return decide(stage, last, fp, inputs, existing, full, set(changed))


INPUTS = {"images": "r1", "nuclei": "r2", "illumination": "r3"}


def test_full_refresh_never_built_and_missing_table_rebuild():
    assert run(CROPS, last_run(INPUTS), INPUTS, full=True).reason == "full refresh"
    assert run(CROPS, None, INPUTS).action == Action.BUILD
    decision = run(CROPS, last_run(INPUTS), INPUTS, existing={"crops"})
    assert (decision.action, decision.reason) == (Action.BUILD, "table crops_rejected missing")


def test_nothing_changed_is_skipped():
    decision = run(CROPS, last_run(INPUTS), INPUTS)
    assert (decision.action, decision.reason) == (Action.SKIP, "up to date")


def test_driver_change_alone_is_incremental():
    decision = run(CROPS, last_run(INPUTS), {**INPUTS, "images": "r9"})
    assert decision.action == Action.INCREMENTAL
    assert decision.changed_sides == ()
    assert decision.reason == "input changed: images"


def test_partitioned_side_inputs_are_incremental_by_partition():
    decision = run(CROPS, last_run(INPUTS), {**INPUTS, "images": "r9", "illumination": "r8"})
    assert decision.action == Action.INCREMENTAL
    assert decision.changed_sides == ("illumination",)
    assert "illumination by plate" in decision.reason
    # A side input rewritten earlier in this build counts as changed too (dry-run planning).
    decision = run(CROPS, last_run(INPUTS), INPUTS, changed={"nuclei"})
    assert decision.changed_sides == ("nuclei",)


def test_undeclared_or_artifact_side_input_forces_a_full_rebuild():
    undeclared = StageFacts(
        name="crops",
        outputs=("crops",),
        inputs=("images", "illumination"),
        incremental_input="images",
    )
    inputs = {"images": "r1", "illumination": "r3"}
    decision = run(undeclared, last_run(inputs), {**inputs, "illumination": "r4"})
    assert decision.action == Action.BUILD
    assert decision.reason == "side input changed: illumination (full rebuild)"
    inputs = {"crops": "r1", "encoder": "r2"}
    decision = run(EMBED, last_run(inputs), {**inputs, "encoder": "r3"})
    assert decision.action == Action.BUILD and "encoder" in decision.reason
    watched = StageFacts(name="x", outputs=("x",), inputs=("a",), incremental_input="a")
    decision = run(watched, last_run({"a": "1", WATCH_KEY: "old"}), {"a": "1", WATCH_KEY: "new"})
    assert decision.action == Action.BUILD and "source files" in decision.reason


def test_non_incremental_stage_rebuilds_on_any_input_change():
    decision = run(TOTAL, last_run({"doubled": "r1"}), {"doubled": "r2"})
    assert (decision.action, decision.reason) == (Action.BUILD, "input changed: doubled")


def test_definition_change_names_the_changed_file():
    old_code = {"stages/crops.py": "a", "cellstore/imaging/crops.py": "b", "package:numpy": "2.4"}
    new_code = {**old_code, "cellstore/imaging/crops.py": "c"}
    decision = run(
        CROPS,
        last_run({**INPUTS, CODE_KEY: old_code}),
        {**INPUTS, CODE_KEY: new_code},
        fp="d2",
    )
    assert decision.action == Action.BUILD
    assert decision.reason == "code changed: cellstore/imaging/crops.py"
    # A code-only difference never counts as an input change when the definition is equal.
    assert (
        run(CROPS, last_run({**INPUTS, CODE_KEY: old_code}), {**INPUTS, CODE_KEY: new_code}).action
        == Action.SKIP
    )
    # Settings changed (same code): the generic reason.
    assert run(CROPS, last_run(INPUTS), INPUTS, fp="d2").reason == "code or settings changed"


def test_package_version_change_is_named():
    text = describe_code_change(
        ["package:numpy"], {"package:numpy": "numpy==2.4.6"}, {"package:numpy": "numpy==2.5.0"}
    )
    assert text == "package changed: numpy numpy==2.4.6 -> numpy==2.5.0"


def test_definition_fingerprint_covers_code_and_settings():
    base = definition_fingerprint("python", "src", "1", {"box": 96}, {"a.py": "1"})
    assert base == definition_fingerprint("python", "src", "1", {"box": 96}, {"a.py": "1"})
    assert base != definition_fingerprint("python", "src", "1", {"box": 64}, {"a.py": "1"})
    assert base != definition_fingerprint("python", "src", "1", {"box": 96}, {"a.py": "2"})
    assert base != definition_fingerprint("python", "src", "2", {"box": 96}, {"a.py": "1"})


def test_enums_compare_equal_to_their_words():
    assert Action.INCREMENTAL == "incremental" and Status.UP_TO_DATE == "up to date"
    assert f"{Action.BUILD} crops" == "build crops"
