"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al., ICML 2020)."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


def gather_views(z: Tensor) -> Tensor:
    """Concatenate z (N, D) from every rank along dim 0, keeping gradients; a no-op alone.

    The functional all_gather backpropagates (its backward is a sum reduce-scatter: each
    rank's rows receive the gradients every rank computed for them) and traces under
    torch.compile; it replaces the deprecated torch.distributed.nn.functional.all_gather.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    from torch.distributed import _functional_collectives as collectives

    # torch 2.14 renamed all_gather_tensor_autograd (kept, deprecated) to ..._single_autograd
    gather = getattr(collectives, "all_gather_single_autograd", None)
    gather = gather or collectives.all_gather_tensor_autograd
    return gather(z.contiguous(), 0, dist.group.WORLD)  # (world × N, D)


class NTXentLoss(nn.Module):
    """NT-Xent (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
    Representations", eq. 1), with cosine similarity and temperature τ.

    For N pairs (z1[i], z2[i]) there are 2N views; each view's positive is its pair and its
    negatives are the other 2N − 2 views. The loss is the mean over the 2N views of
    −log softmax(sim / τ)[positive]. Under torch.distributed (when initialised) the views of
    all ranks are gathered first, so every rank computes the loss of the concatenated global
    batch; the gather's backward sums the W identical contributions and DDP's gradient
    averaging divides by W, which gives exactly the single-process gradient.
    Computed in float32 whatever the autocast dtype.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if not (isinstance(temperature, int | float) and math.isfinite(temperature)):
            raise ValueError(
                f"NTXentLoss: temperature must be a finite number, got {temperature!r}"
            )
        if temperature <= 0:
            raise ValueError(f"NTXentLoss: temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(
        self, z1: Tensor, z2: Tensor, *, return_accuracy: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Loss of the pairs (z1[i], z2[i]); with return_accuracy also the positive top-1.

        z1, z2: (N, D) projections of the two views. The top-1 accuracy is the fraction of the
        2N (global) views whose most similar other view is their positive.
        """
        if z1.shape != z2.shape or z1.ndim != 2:
            raise ValueError(
                f"NTXentLoss: need two (N, D) views of one shape, got {tuple(z1.shape)} "
                f"and {tuple(z2.shape)}"
            )
        z1, z2 = gather_views(z1.float()), gather_views(z2.float())  # (N, D) global
        n = z1.shape[0]
        z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)  # (2N, D), unit rows
        logits = z @ z.T / self.temperature  # (2N, 2N) cosine / τ
        self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_mask, float("-inf"))  # a view is not its own negative
        positive = torch.arange(2 * n, device=z.device).roll(n)  # (2N,) i ↔ i ± N
        loss = F.cross_entropy(logits, positive)
        if not return_accuracy:
            return loss
        with torch.no_grad():
            top1 = (logits.argmax(dim=1) == positive).float().mean()
        return loss, top1
