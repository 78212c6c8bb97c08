"""Inference: crops → the encoder's pooled features h, batched, without augmentation."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from cellstore.ssl.augment import prepare
from cellstore.ssl.device import resolve_device
from cellstore.ssl.encoder import SimCLRModel


def embed(
    model_or_encoder: nn.Module,
    batches: Iterable[Any],
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    device: str | torch.device = "auto",
    *,
    bf16: bool = False,
) -> np.ndarray:
    """h features (N, d) float32 of every crop in `batches`, in order.

    batches: uint8 (or [0, 1] float) crops (B, C, H, W), torch tensors or numpy arrays; each
    is resized to size × size and normalised with (mean, std) as in training (`prepare`).
    A SimCLRModel contributes its encoder only (h, not the projection z). Runs in eval mode
    under torch.inference_mode, channels_last; on CUDA bf16 autocast if bf16=True.
    The module's train/eval mode is restored afterwards.
    """
    encoder = (
        model_or_encoder.encoder if isinstance(model_or_encoder, SimCLRModel) else model_or_encoder
    )
    device = resolve_device(device)
    cuda = device.type == "cuda"
    was_training = encoder.training
    encoder.eval().to(device)
    encoder.to(memory_format=torch.channels_last)  # ~1.6x faster on a CPU too
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda and bf16 else nullcontext()
    parts: list[np.ndarray] = []
    try:
        with torch.inference_mode(), autocast:
            for batch in batches:
                crops = torch.as_tensor(batch)
                if cuda:
                    crops = crops.pin_memory().to(device, non_blocking=True)
                x = prepare(crops, size, mean, std)  # (B, C, size, size) float32
                x = x.contiguous(memory_format=torch.channels_last)
                h = encoder(x)  # (B, d)
                parts.append(h.float().cpu().numpy())
    finally:
        encoder.train(was_training)
    if not parts:
        raise ValueError("embed: no batches given")
    return np.concatenate(parts)
