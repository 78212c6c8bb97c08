"""Resolves each stage's settings: defaults ← [settings] ← [stages.<name>] ← CLI overrides."""

from __future__ import annotations

from typing import Any

from cellstore.engine.config import Config
from cellstore.engine.project import Project
from cellstore.errors import CellstoreError


def resolve_settings(
    project: Project, config: Config, overrides: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Settings per stage; an unknown stage or key anywhere is an error naming it."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    where = str(config.path) if config.path else "cellstore.toml"
    declared = {k for s in project.stages.values() for k in s.settings}
    for key in config.settings:
        if key not in declared:
            raise CellstoreError(
                f"{where}: [settings] key {key!r} is not a setting of any stage "
                f"(known: {', '.join(sorted(declared)) or 'none'})"
            )
    for key in overrides:
        if key not in declared:
            raise CellstoreError(f"no stage of {project.root} takes a {key!r} setting")
    for name, table in config.stages.items():
        if name not in project.stages:
            raise CellstoreError(f"{where}: [stages.{name}] names no stage of the project")
        for key in table:
            if key not in project.stages[name].settings:
                valid = ", ".join(sorted(project.stages[name].settings)) or "none"
                raise CellstoreError(
                    f"{where}: [stages.{name}] unknown key {key!r} (settings of {name}: {valid})"
                )
    resolved: dict[str, dict[str, Any]] = {}
    for name, stage in project.stages.items():
        values = dict(stage.settings)
        for layer, label in (
            (config.settings, "[settings]"),
            (config.stages.get(name, {}), f"[stages.{name}]"),
            (overrides, "command line"),
        ):
            for key, value in layer.items():
                if key in values:
                    values[key] = _checked(name, key, stage.settings[key], value, label)
        resolved[name] = values
    return resolved


def _checked(stage: str, key: str, default: Any, value: Any, label: str) -> Any:
    """Keep a setting's type stable: an int where a float is expected is fine, not a string."""
    if default is None or value is None:
        return value
    if isinstance(default, bool) != isinstance(value, bool):
        ok = False
    elif isinstance(default, float) and isinstance(value, int):
        return float(value)
    elif isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise CellstoreError(
            f"{label}: setting {key!r} of stage {stage} must be {type(default).__name__}, "
            f"got {value!r}"
        )
    return value
