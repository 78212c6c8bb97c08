"""Synthetic BBBC021 plates with MoA- and dose-dependent phenotypes and batch effects."""

from cellstore.synth.demo import DEMO, demo_fingerprint, demo_source
from cellstore.synth.generate import GENERATOR_VERSION, SynthParams, generate

__all__ = [
    "DEMO",
    "GENERATOR_VERSION",
    "SynthParams",
    "demo_fingerprint",
    "demo_source",
    "generate",
]
