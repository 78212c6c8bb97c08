"""The parameters that determine a generated source, kept import-light for fingerprints."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

# Bump when the generator's output changes for the same parameters (invalidates caches).
GENERATOR_VERSION = "4"
SUMMARY_FILE = "cellstore_synth.json"


@dataclass(frozen=True)
class SynthParams:
    """Everything that determines a generated source (its fingerprint)."""

    plates: tuple[str, ...] | None = None  # None: every plate of the metadata
    sites: int | None = None  # None: every site (4); N: sites 1..N of each well
    scale: float = 1.0  # 1: 1280×1024 images; 0.5: 640×512 (same cells, coarser pixels)
    seed: int = 0
    wells: str = "all"  # "all" or "annotated" (treatments in moa.csv, DMSO included)
    density: float = 1.0  # multiplies the number of cells per field
    batch_strength: float = 1.0  # multiplies the Week effects in phenotype space (1: calibrated)
    heterogeneity: float = 1.0  # multiplies the within-MoA spread of compounds (1: calibrated)

    def fingerprint(self) -> str:
        payload = json.dumps(asdict(self) | {"version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
