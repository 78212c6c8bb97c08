"""Self-supervised (SimCLR) learning of cell representations: augment, encoder, loss, data, train.

Library only (nothing here imports the engine). Submodules import torch and kornia at their
top, so this package exports their classes lazily: `from cellstore.ssl import NTXentLoss` loads
only what that name needs, and `import cellstore.ssl` loads nothing heavy. The functions named
like their modules (`train.train`, `embed.embed`) are not re-exported: once imported, a
submodule would shadow them on the package.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SimCLRAugment": "augment",
    "prepare": "augment",
    "build_encoder": "encoder",
    "ProjectionHead": "encoder",
    "SimCLRModel": "encoder",
    "NTXentLoss": "loss",
    "CropStream": "data",
    "CropFile": "data",
    "PRESETS": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cellstore.ssl' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cellstore.ssl.{module}"), name)
