"""Parse metadata field values into canonical Python values."""

from __future__ import annotations

import math


def parse_concentration(text: str) -> float:
    """A concentration in µM as a canonical float.

    `3e-4`, `0.0003`, `0.000300` and `"3.000000e-04"` are one value: the text is parsed as a
    float and rounded to 12 significant digits, so decimal spellings that differ only by
    float rounding (`0.30000000000000004`) also meet. Raises ValueError for anything that
    is not a finite, non-negative number.
    """
    stripped = text.strip().strip('"').strip()
    try:
        value = float(stripped)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} is not a finite non-negative concentration")
    return canonical_concentration(value)


def canonical_concentration(value: float) -> float:
    """Round to 12 significant digits (and turn -0.0 into 0.0)."""
    return float(f"{value:.12g}") + 0.0


def parse_int(text: str) -> int:
    """An integer field; `4`, `"4"` and `4.0` are accepted, `4.5` is not."""
    stripped = text.strip().strip('"').strip()
    try:
        return int(stripped)
    except ValueError:
        pass
    try:
        value = float(stripped)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None
    if not value.is_integer():
        raise ValueError(f"{text!r} is not an integer")
    return int(value)


def parse_text(text: str) -> str:
    """A non-empty text field, surrounding whitespace removed."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty value")
    return stripped
