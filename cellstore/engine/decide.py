"""The build decision: fingerprints, and what a build does with one stage and why (pure)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Reserved keys of a run's recorded inputs (beside one key per input table).
WATCH_KEY = "__watch__"  # digest of outside state a stage's watch hook reports
CODE_KEY = "__code__"  # {file or package:<name>: sha or version} of the code it ran


class Action(StrEnum):
    """What a build does with a stage."""

    BUILD = "build"  # recompute every row
    INCREMENTAL = "incremental"  # recompute only new, changed and affected keys
    SKIP = "skip"
    NOT_SELECTED = "not selected"


class Status(StrEnum):
    """How a stage ended in a build."""

    BUILT = "built"
    INCREMENTAL = "incremental"
    UP_TO_DATE = "up to date"
    FAILED = "failed"
    BLOCKED = "blocked"


BUILT_STATUSES = (Status.BUILT.value, Status.INCREMENTAL.value)


def digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StageFacts:
    """What the decision needs to know about a stage (no warehouse, no files)."""

    name: str
    outputs: tuple[str, ...]
    inputs: tuple[str, ...]
    incremental_input: str | None = None  # the driver table; None: not incremental
    partitions: Mapping[str, str] = field(default_factory=dict)  # side input → column
    artifact_inputs: Set[str] = frozenset()  # inputs that arrive as artifact folders


def definition_fingerprint(
    kind: str, source: str, version: str | None, settings: dict[str, Any], code: dict[str, str]
) -> str:
    """Everything about a stage but its inputs: source, version, hashed settings, code."""
    return digest(
        {"kind": kind, "source": source, "version": version, "settings": settings, "code": code}
    )


def run_fingerprint(definition_fp: str, inputs: dict[str, Any]) -> str:
    return digest([definition_fp, inputs])


@dataclass(frozen=True)
class Decision:
    """An action, the reason shown to the user, and for incremental runs which side inputs
    changed (each recomputes only the partitions it changed, by its declared column)."""

    action: Action
    reason: str
    changed_sides: tuple[str, ...] = ()


def code_changes(old: dict[str, str] | None, new: dict[str, str]) -> list[str]:
    """Files (or packages) whose hash or version differs, was added or went away."""
    if old is None:
        return []
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def describe_code_change(changed: list[str], old: dict[str, str], new: dict[str, str]) -> str:
    files = [c for c in changed if not c.startswith("package:")]
    packages = [c for c in changed if c.startswith("package:")]
    parts = []
    if files:
        shown = ", ".join(files[:3]) + (f" (+{len(files) - 3} more)" if len(files) > 3 else "")
        parts.append(f"code changed: {shown}")
    for key in packages[:3]:
        name = key.removeprefix("package:")
        before, after = old.get(key) or "none", new.get(key) or "none"
        parts.append(f"package changed: {name} {before} -> {after}")
    return "; ".join(parts)


def decide(
    stage: StageFacts,
    last: Mapping[str, Any] | None,
    definition_fp: str,
    inputs: dict[str, Any],
    existing: Set[str],
    full_refresh: bool,
    changed_upstream: Set[str],
    last_inputs: dict[str, Any] | None = None,
    damaged: Mapping[str, str] | None = None,
) -> Decision:
    """Build, rebuild incrementally, or skip; the reason names what changed.

    `last` is the stage's last successful run record (`definition_fp`, `inputs` as JSON),
    `inputs` what its inputs are now ({table: producing run id, WATCH_KEY: digest,
    CODE_KEY: code}), `changed_upstream` tables this build rewrites before the stage runs.
    Incremental only when it is correct: the driver alone changed (new, changed and vanished
    keys), or side inputs changed that declare how they partition the stage.
    `damaged`: output tables whose data files are missing or truncated → why (verify.py); such
    a table is never up to date, and never extended incrementally on top of lost rows.
    """
    if full_refresh:
        return Decision(Action.BUILD, "full refresh")
    if last is None:
        return Decision(Action.BUILD, "never built")
    missing = [t for t in stage.outputs if t not in existing]
    if missing:
        return Decision(Action.BUILD, f"table {missing[0]} missing")
    broken = [t for t in stage.outputs if damaged and t in damaged]
    if broken:
        return Decision(Action.BUILD, damaged[broken[0]])  # type: ignore[index]
    old = last_inputs if last_inputs is not None else json.loads(last.get("inputs") or "{}")
    if last.get("definition_fp") != definition_fp:
        new_code = inputs.get(CODE_KEY) or {}
        changed_code = code_changes(old.get(CODE_KEY), new_code)
        if changed_code:
            return Decision(
                Action.BUILD, describe_code_change(changed_code, old.get(CODE_KEY), new_code)
            )
        return Decision(Action.BUILD, "code or settings changed")
    changed = sorted(
        {k for k in inputs if k != CODE_KEY and old.get(k) != inputs[k]}
        | (set(stage.inputs) & set(changed_upstream))
    )
    if not changed:
        return Decision(Action.SKIP, "up to date")
    names = ", ".join("source files" if k == WATCH_KEY else k for k in changed)
    if stage.incremental_input is None:
        return Decision(Action.BUILD, f"input changed: {names}")
    sides = [k for k in changed if k != stage.incremental_input]
    whole = [k for k in sides if k not in stage.partitions or k in stage.artifact_inputs]
    if whole:
        # A side input every row may depend on: no old row can be trusted.
        label = "source files" if whole[0] == WATCH_KEY else whole[0]
        return Decision(Action.BUILD, f"side input changed: {label} (full rebuild)")
    detail = [
        f"{k} by {stage.partitions[k]}" if k != stage.incremental_input else k for k in changed
    ]
    return Decision(Action.INCREMENTAL, f"input changed: {', '.join(detail)}", tuple(sides))
