"""Project configuration: `cellstore.toml`, validated so a typo is an error, not a no-op."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellstore.errors import CellstoreError

CONFIG_FILE = "cellstore.toml"

# Top-level keys and what they mean (shown in errors, so a user sees the valid choices).
TOP_LEVEL_KEYS = {
    "warehouse": "warehouse folder (catalog + Parquet data), default 'warehouse'",
    "catalog": "DuckLake catalog backend: 'sqlite' (default), 'duckdb' or 'postgres:<dsn>'",
    "data_path": "where Parquet data files go, default '<warehouse>/data/'",
    "settings": "table of settings passed to every stage that declares them (source, ...)",
    "stages": "per-stage settings: [stages.<name>] key = value",
}


@dataclass
class Config:
    """Resolved configuration of one project."""

    project_dir: Path
    path: Path | None = None
    warehouse: Path = Path("warehouse")
    catalog: str = "sqlite"
    data_path: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_config(
    project_dir: Path, config_file: Path | None = None, warehouse: Path | None = None
) -> Config:
    """Read `cellstore.toml` (optional unless `config_file` is given) and apply CLI overrides."""
    project_dir = project_dir.resolve()
    path = config_file if config_file is not None else project_dir / CONFIG_FILE
    raw: dict[str, Any] = {}
    if config_file is not None and not path.is_file():
        raise CellstoreError(f"config file {path} does not exist")
    if path.is_file():
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise CellstoreError(f"{path}: not valid TOML: {exc}") from None
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            valid = ", ".join(sorted(TOP_LEVEL_KEYS))
            raise CellstoreError(f"{path}: unknown key {key!r} (valid keys: {valid})")
    config = Config(project_dir=project_dir, path=path if path.is_file() else None)
    if "warehouse" in raw:
        config.warehouse = Path(_expect(raw, "warehouse", str, path))
    if "catalog" in raw:
        config.catalog = _expect(raw, "catalog", str, path)
    if "data_path" in raw:
        config.data_path = _expect(raw, "data_path", str, path)
    config.settings = dict(_expect(raw, "settings", dict, path)) if "settings" in raw else {}
    stages = _expect(raw, "stages", dict, path) if "stages" in raw else {}
    for name, table in stages.items():
        if not isinstance(table, dict):
            raise CellstoreError(f"{path}: [stages.{name}] must be a table of settings")
    config.stages = {name: dict(table) for name, table in stages.items()}
    if warehouse is not None:
        config.warehouse = warehouse
    if not config.warehouse.is_absolute():
        config.warehouse = (
            (project_dir / config.warehouse)
            if warehouse is None
            else (Path.cwd() / config.warehouse)
        )
    return config


def _expect(raw: dict[str, Any], key: str, kind: type, path: Path) -> Any:
    value = raw[key]
    if not isinstance(value, kind):
        raise CellstoreError(
            f"{path}: key {key!r} must be a {kind.__name__}, got {type(value).__name__}"
        )
    return value
