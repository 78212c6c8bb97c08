"""What a table's contract reads besides the table itself (for ordering stages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tables_checked_against(schema_dir: Path, table: str) -> set[str]:
    """Tables named by the `relationship` (`to:`) and `row_accounting` (`input:`,
    `rejected:`) checks of `schema_dir/<table>.yml`; empty when there is no contract.

    Read with plain YAML (not the full contract parser): a wrong file is reported by the
    checks themselves when the stage runs.
    """
    path = schema_dir / f"{table}.yml"
    if not path.is_file():
        return set()
    import yaml

    try:
        doc = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError):
        return set()
    found: set[str] = set()
    for check in doc.get("checks") or [] if isinstance(doc, dict) else []:
        if not isinstance(check, dict):
            continue
        for kind, keys in (("relationship", ("to",)), ("row_accounting", ("input", "rejected"))):
            options: Any = check.get(kind)
            if isinstance(options, dict):
                found.update(options[k] for k in keys if isinstance(options.get(k), str))
    found.discard(table)
    return found
