"""SimCLR augmentations for fluorescence crops, batched on the tensor's device (kornia)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from kornia.filters import get_gaussian_kernel1d
from torch import Tensor, nn


def odd_kernel(size: int, fraction: float) -> int:
    """int(fraction × size), made odd by adding 1, at least 3 (a Gaussian kernel width).

    SimCLR's rule: 0.1 × 96 px gives the paper's kernel 9; 48 px gives 5.
    """
    k = max(3, int(fraction * size))
    return k if k % 2 else k + 1


def to_unit_float(batch: Tensor) -> Tensor:
    """uint8 crops → float32 in [0, 1]; floating crops are taken to be in [0, 1] already."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(255.0)
    if not batch.is_floating_point():
        raise TypeError(f"augment: crops must be uint8 or float, got {batch.dtype}")
    return batch.float()


def banded_filter(kernel: Tensor, n: int, border: str) -> Tensor:
    """(B, n, n) matrices M such that M @ x correlates a length-n signal x with kernel (B, k).

    border "constant" (zeros outside) or "reflect" (torch's reflect: no edge repeat). A
    separable filter becomes two batched matmuls, much faster on CPU than a depthwise conv.
    """
    batch, k = kernel.shape
    r = k // 2
    if border == "reflect" and r >= n:
        raise ValueError(f"augment: a {k}-tap kernel cannot reflect-pad a {n}-pixel axis")
    rows = torch.arange(n, device=kernel.device)
    src = rows[:, None] + torch.arange(k, device=kernel.device)[None, :] - r  # (n, k)
    weight = kernel[:, None, :].expand(batch, n, k)
    if border == "reflect":
        src = src.abs()
        src = torch.where(src > n - 1, 2 * (n - 1) - src, src)
    elif border == "constant":
        weight = weight * ((src >= 0) & (src < n)).to(kernel.dtype)
        src = src.clamp(0, n - 1)
    else:
        raise ValueError(f"augment: border must be 'constant' or 'reflect', got {border!r}")
    matrix = kernel.new_zeros(batch, n, n)
    return matrix.scatter_add_(2, src.expand(batch, n, k), weight)


def separable_filter(x: Tensor, kernel_y: Tensor, kernel_x: Tensor, border: str) -> Tensor:
    """Correlate x (B, C, H, W) with per-sample 1-D kernels (B, ky) down rows and (B, kx) across."""
    my = banded_filter(kernel_y.to(x.dtype), x.shape[-2], border)  # (B, H, H)
    mx = banded_filter(kernel_x.to(x.dtype), x.shape[-1], border)  # (B, W, W)
    return my[:, None] @ x @ mx[:, None].transpose(-1, -2)  # (B, C, H, W)


class RandomElastic(K.RandomElasticTransform):
    """kornia's RandomElasticTransform (same parameters and math), smoothing by matmul.

    kornia smooths the (B, 2, H, W) noise with a depthwise convolution, which dominates the
    augmentation time on CPU; a banded matmul gives the same field (to float rounding).
    """

    def apply_transform(
        self,
        input: Tensor,
        params: dict[str, Tensor],
        flags: dict[str, Any],
        transform: Tensor | None = None,
    ) -> Tensor:
        batch, _, h, w = input.shape
        (ky, kx), (sy, sx), (ax, ay) = flags["kernel_size"], flags["sigma"], flags["alpha"]
        noise = params["noise"].to(input.device, input.dtype)  # (B, 2, H, W), channels (x, y)
        kernel_y = get_gaussian_kernel1d(ky, sy, device=input.device, dtype=input.dtype)
        kernel_x = get_gaussian_kernel1d(kx, sx, device=input.device, dtype=input.dtype)
        disp = separable_filter(
            noise, kernel_y.expand(batch, -1), kernel_x.expand(batch, -1), "constant"
        )
        disp = disp * torch.tensor([ax, ay], device=input.device, dtype=input.dtype)[:, None, None]
        identity = torch.eye(2, 3, device=input.device, dtype=torch.float32)[None]
        grid = F.affine_grid(identity, [1, 1, h, w], align_corners=flags["align_corners"])
        return F.grid_sample(
            input,
            grid.to(input.dtype) + disp.permute(0, 2, 3, 1),  # (B, H, W, 2)
            mode=flags["resample"].name.lower(),
            padding_mode=flags["padding_mode"],
            align_corners=flags["align_corners"],
        )


class RandomBlur(K.RandomGaussianBlur):
    """kornia's RandomGaussianBlur (per-sample σ, reflect border), filtering by matmul."""

    def apply_transform(
        self,
        input: Tensor,
        params: dict[str, Tensor],
        flags: dict[str, Any],
        transform: Tensor | None = None,
    ) -> Tensor:
        k = flags["kernel_size"]
        ky, kx = (k, k) if isinstance(k, int) else k
        sigma = params["sigma"].to(input.device, input.dtype)[:, None]  # (B, 1)
        if self.same_on_batch:
            sigma = sigma[:1].expand(input.shape[0], 1)
        kernel_y = get_gaussian_kernel1d(ky, sigma)  # (B, ky)
        kernel_x = get_gaussian_kernel1d(kx, sigma)  # (B, kx)
        return separable_filter(input, kernel_y, kernel_x, flags["border_type"].name.lower())


class RandomChannelJitter(K.IntensityAugmentationBase2D):
    """Brightness and contrast jitter with an independent factor per sample AND per channel.

    Fluorescence channels are separate stains, not RGB: each channel c of sample b is mapped
    to clamp((x - m) * contrast[b, c] + m * brightness[b, c], 0, 1), m = the channel's mean;
    i.e. contrast scales around the mean and brightness scales the mean. Factors are uniform in
    [1 - brightness, 1 + brightness] and [1 - contrast, 1 + contrast]. No hue, no saturation.
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, p: float = 0.8) -> None:
        super().__init__(p=p, same_on_batch=False)
        for name, value in (("brightness", brightness), ("contrast", contrast)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"RandomChannelJitter: {name} must be in [0, 1), got {value}")
        self.flags = {"brightness": float(brightness), "contrast": float(contrast)}

    def generate_parameters(self, batch_shape: tuple[int, ...]) -> dict[str, Tensor]:
        batch, channels = batch_shape[0], batch_shape[1]
        # Drawn from the global torch RNG on the module's RNG device, like kornia's own samplers.
        u = torch.rand(2, batch, channels, device=self.device, dtype=self.dtype) * 2 - 1
        return {
            "brightness_factor": 1 + self.flags["brightness"] * u[0],  # (B, C)
            "contrast_factor": 1 + self.flags["contrast"] * u[1],  # (B, C)
        }

    def apply_transform(
        self,
        input: Tensor,
        params: dict[str, Tensor],
        flags: dict[str, Any],
        transform: Tensor | None = None,
    ) -> Tensor:
        b = params["brightness_factor"].to(input.device, input.dtype)[:, :, None, None]
        c = params["contrast_factor"].to(input.device, input.dtype)[:, :, None, None]
        mean = input.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        return ((input - mean) * c + mean * b).clamp_(0.0, 1.0)


class SimCLRAugment(nn.Module):
    """The SimCLR view generator for (B, C, H, W) crops, parameters drawn per sample.

    Order: random resized crop (scale 0.08–1, ratio 3/4–4/3) to `size` → horizontal and
    vertical flips (p 0.5 each) → random 90° rotation (0/90/180/270, equally likely) →
    elastic deformation (p 0.5) → per-channel brightness/contrast jitter (p 0.8) → Gaussian
    blur (kernel int(0.1 × size) made odd, 9 at 96 px; σ 0.1–2; p 0.5) → per-channel
    normalisation. The elastic field displaces pixels by ~1 px RMS × elastic_alpha.

    Input: uint8 (0–255) or float (0–1) crops on any device; output: float32 on that device,
    (B, C, size, size). Randomness: kornia draws from the global torch RNG of the module's
    device (the module moves itself to the input's device). Pass `seed=` to make a call
    deterministic: it runs inside `torch.random.fork_rng` seeded with `seed`, so the caller's
    RNG state is untouched and the same (seed, input) gives the same views; or pass a
    `torch.Generator`, from which the seed is drawn.
    """

    def __init__(
        self,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        elastic_p: float = 0.5,
        elastic_alpha: float = 1.0,
        jitter_p: float = 0.8,
        brightness: float = 0.4,
        contrast: float = 0.4,
        blur_p: float = 0.5,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
    ) -> None:
        super().__init__()
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"augment: need one positive std per mean, got mean={mean} std={std}")
        self.size = int(size)
        elastic_kernel = odd_kernel(self.size, 0.33)
        elastic_sigma = elastic_kernel / 4.4  # ~1 px RMS displacement at alpha 1 (measured)
        self.augment = nn.Sequential(
            K.RandomResizedCrop(
                (self.size, self.size), scale=scale, ratio=ratio, cropping_mode="resample"
            ),
            K.RandomHorizontalFlip(p=0.5),
            K.RandomVerticalFlip(p=0.5),
            # times is drawn uniformly in [-2, 2] and rounded: -90, 0, 90 and ±180 each 1/4
            K.RandomRotation90(times=(-2, 2), p=1.0),
            RandomElastic(
                kernel_size=(elastic_kernel, elastic_kernel),
                sigma=(elastic_sigma, elastic_sigma),
                alpha=(elastic_alpha, elastic_alpha),
                padding_mode="border",
                p=elastic_p,
            ),
            RandomChannelJitter(brightness=brightness, contrast=contrast, p=jitter_p),
            RandomBlur(odd_kernel(self.size, 0.1), blur_sigma, p=blur_p),
        )
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(
        self, batch: Tensor, *, seed: int | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        if batch.ndim != 4 or batch.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"augment: expected (B, {self.mean.shape[1]}, H, W) crops, got {tuple(batch.shape)}"
            )
        if self.mean.device != batch.device:
            self.to(batch.device)  # kornia samples on the module's device
        if generator is not None:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        if seed is None:
            return self._views(batch)
        cuda = batch.device.type == "cuda"
        with torch.random.fork_rng(devices=[batch.device] if cuda else [], device_type="cuda"):
            torch.random.default_generator.manual_seed(seed)
            if cuda:  # only this device's generator, not every GPU's (torch.manual_seed would)
                with torch.cuda.device(batch.device):
                    torch.cuda.manual_seed(seed)
            return self._views(batch)

    def _views(self, batch: Tensor) -> Tensor:
        x = to_unit_float(batch)  # (B, C, H, W) in [0, 1]
        x = self.augment(x)  # (B, C, size, size)
        return (x - self.mean) / self.std


def prepare(batch: Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Inference transform: crops → float32 resized to size × size and normalised, no augmentation.

    Resizes the whole crop with bilinear interpolation (align_corners=True, as the training
    crop's resample), so a crop sees the same pixel grid as a full-scale training view.
    """
    x = to_unit_float(batch)  # (B, C, H, W)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s
