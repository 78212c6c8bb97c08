"""What a table's contract reads besides the table itself (for ordering stages)."""

from __future__ import annotations

import re
from pathlib import Path

# `to: images`, `{input: images, rejected: images_rejected}`: the tables a relationship or
# row_accounting check reads. A plain text scan (no YAML parse on every build): a key that
# only looks like one adds an ordering preference at worst, never an error.
_READS = re.compile(r"\b(?:to|input|rejected)\s*:\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)")


def tables_checked_against(schema_dir: Path, table: str) -> set[str]:
    """Tables named by the `relationship` (`to:`) and `row_accounting` (`input:`,
    `rejected:`) checks of `schema_dir/<table>.yml`; empty when there is no contract."""
    path = schema_dir / f"{table}.yml"
    try:
        text = path.read_text()
    except OSError:
        return set()
    if "relationship" not in text and "row_accounting" not in text:
        return set()
    return set(_READS.findall(text)) - {table}
