"""Synthetic BBBC021 plates with MoA- and dose-dependent phenotypes and batch effects."""

from typing import Any

from cellstore.synth.demo import DEMO, demo_fingerprint, demo_source
from cellstore.synth.params import GENERATOR_VERSION, SynthParams
from cellstore.synth.source import resolve_source, source_digest

__all__ = [
    "DEMO",
    "GENERATOR_VERSION",
    "SynthParams",
    "demo_fingerprint",
    "demo_source",
    "generate",
    "resolve_source",
    "source_digest",
]


def __getattr__(name: str) -> Any:
    # The generator pulls in scipy and the renderer: load it only when asked for, so a
    # fingerprint of the demo (every no-op build computes one) stays cheap.
    if name == "generate":
        from cellstore.synth.plates import generate

        return generate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
