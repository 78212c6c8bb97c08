"""Feature sources by declaration: which tables well_profiles aggregates, and how.

A table becomes a feature source by a `feature_source` key in its schema file
(`schemas/<table>.yml`):

    feature_source: handcrafted            # short form: the source's name, cell grain
    feature_source:
      name: simclr                         # or source_column (one source per value)
      source_column: model                 # rows split into sources by this column's value
      grain: cell                          # cell (mean over a well's cells) | well
      layout: vector                       # wide | vector | long (default: from the roles)

The layout follows from the column roles: a column with role `vector` (or a `FLOAT[]`
column with role `feature`) is one vector per row; `column_groups` (or scalar columns) with
role `feature` are wide columns, packed in table order. `long` (one row per well and
feature: `index`, `feature`, `value` columns) is for well-level files such as CellProfiler
exports. Cell-grain sources take their wells' treatment from `images`; well-grain sources
carry `batch`, `compound` and `concentration` themselves.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

GRAINS = ("cell", "well")
LAYOUTS = ("wide", "vector", "long")
DECLARATION_KEYS = {
    "name",
    "source_column",
    "grain",
    "layout",
    "vector",
    "columns",
    "patterns",
    "plate",
    "well",
    "index",
    "feature",
    "value",
    "description",
}
WELL_METADATA = ("batch", "compound", "concentration")


class DeclarationError(ValueError):
    """A feature source declaration that cannot be used; the message names the file."""


@dataclass(frozen=True)
class FeatureSource:
    """One declared feature source (or a family of them, split by `source_column`)."""

    table: str
    name: str | None = None
    source_column: str | None = None
    grain: str = "cell"
    layout: str = "wide"
    vector: str | None = None
    columns: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    plate: str = "plate"
    well: str = "well"
    index: str = "feature_index"
    feature: str = "feature"
    value: str = "value"

    @property
    def label(self) -> str:
        """How messages name it: the source name, or the table split by its column."""
        return self.name or f"{self.table} (by {self.source_column})"

    def wide_columns(self, names: list[str]) -> list[str]:
        """The feature columns among a table's `names`, in table order."""
        wanted = set(self.columns)
        found = [n for n in names if n in wanted or any(re.search(p, n) for p in self.patterns)]
        missing = [c for c in self.columns if c not in names]
        if missing:
            raise DeclarationError(
                f"feature source {self.label}: table {self.table} has no column(s) {missing}"
            )
        return found

    def digest_payload(self) -> dict[str, Any]:
        return asdict(self)


def declared_sources(schema_dir: Path) -> list[FeatureSource]:
    """Every feature source declared in `schema_dir/*.yml`, sorted by table."""
    sources: list[FeatureSource] = []
    for path in sorted(Path(schema_dir).glob("*.yml")):
        text = path.read_text(encoding="utf-8")
        if "feature_source:" not in text:  # cheap: most schema files declare none
            continue
        try:
            doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            raise DeclarationError(f"{path}: not valid YAML: {exc}") from None
        if isinstance(doc, dict) and doc.get("feature_source") is not None:
            sources.append(parse_declaration(doc, path))
    names = [s.name for s in sources if s.name]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DeclarationError(f"{schema_dir}: feature source(s) {twice} declared twice")
    return sources


def parse_declaration(doc: dict[str, Any], path: Path) -> FeatureSource:
    """The `feature_source` entry of one parsed schema file, checked against its columns."""
    table = doc.get("table") or path.stem
    raw = doc["feature_source"]
    where = f"{path}: feature_source"
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise DeclarationError(f"{where}: expected a name or a mapping")
    unknown = sorted(set(raw) - DECLARATION_KEYS)
    if unknown:
        allowed = ", ".join(sorted(DECLARATION_KEYS))
        raise DeclarationError(f"{where}: unknown key(s) {unknown} (allowed: {allowed})")
    if bool(raw.get("name")) == bool(raw.get("source_column")):
        raise DeclarationError(f"{where}: give exactly one of name or source_column")
    grain = raw.get("grain", "cell")
    if grain not in GRAINS:
        raise DeclarationError(f"{where}: grain must be one of {GRAINS}, not {grain!r}")
    columns = [c for c in doc.get("columns") or [] if isinstance(c, dict)]
    groups = [g for g in doc.get("column_groups") or [] if isinstance(g, dict)]
    vectors = [
        c["name"]
        for c in columns
        if c.get("role") == "vector"
        or (c.get("role") == "feature" and str(c.get("type", "")).upper().endswith("[]"))
    ]
    layout = raw.get("layout") or ("vector" if vectors or raw.get("vector") else "wide")
    if layout not in LAYOUTS:
        raise DeclarationError(f"{where}: layout must be one of {LAYOUTS}, not {layout!r}")
    fields: dict[str, Any] = {
        k: raw[k] for k in ("plate", "well", "index", "feature", "value") if k in raw
    }
    source = FeatureSource(
        table=table,
        name=raw.get("name"),
        source_column=raw.get("source_column"),
        grain=grain,
        layout=layout,
        **fields,
    )
    declared = {c["name"] for c in columns}
    if layout == "vector":
        vector = raw.get("vector") or (vectors[0] if len(vectors) == 1 else None)
        if vector is None:
            raise DeclarationError(
                f"{where}: a vector source needs one column with role vector "
                f"(found {vectors or 'none'}); name it with `vector:`"
            )
        source = _replace(source, vector=vector)
    elif layout == "wide":
        explicit = tuple(raw.get("columns") or ())
        patterns = tuple(raw.get("patterns") or ())
        if not explicit and not patterns:
            patterns = tuple(g["pattern"] for g in groups if g.get("role") == "feature")
            explicit = tuple(
                c["name"]
                for c in columns
                if c.get("role") == "feature" and c["name"] not in vectors
            )
        if not explicit and not patterns:
            raise DeclarationError(
                f"{where}: a wide source needs columns or column_groups with role feature"
            )
        source = _replace(source, columns=explicit, patterns=patterns)
    else:
        if grain != "well":
            raise DeclarationError(f"{where}: a long source is well-level (grain: well)")
    needed = [source.plate, source.well]
    if source.source_column:
        needed.append(source.source_column)
    if layout == "long":
        needed += [source.index, source.feature, source.value]
    if source.vector:
        needed.append(source.vector)
    if grain == "well":
        needed += list(WELL_METADATA)
    missing = [c for c in needed if declared and c not in declared]
    if missing:
        raise DeclarationError(f"{where}: the table declares no column(s) {missing}")
    return source


def _replace(source: FeatureSource, **changes: Any) -> FeatureSource:
    return FeatureSource(**{**asdict(source), **changes})


def sources_digest(sources: list[FeatureSource]) -> str:
    """A stable text of the declarations (what a stage's fingerprint should see)."""
    return json.dumps([s.digest_payload() for s in sources], sort_keys=True)
