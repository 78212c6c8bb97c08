"""Encoders (torchvision ResNets without fc, a small CNN), the projection head, SimCLR model."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

RESNETS = ("resnet18", "resnet34", "resnet50")
ENCODERS = (*RESNETS, "small_cnn")


class SmallCNN(nn.Module):
    """Four conv blocks (32, 64, 128, 256 channels; conv3×3–BN–ReLU–maxpool 2) + global avg pool.

    h is 256-d; at 48 px a CPU trains it in minutes (the demo encoder).
    """

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for width in widths:
            layers += [
                nn.Conv2d(previous, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            previous = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = previous

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(1)  # (B, 256)


def _resnet(name: str, in_channels: int) -> nn.Module:
    """A torchvision ResNet, random init (weights=None: nothing is downloaded), fc → Identity."""
    net = getattr(torchvision.models, name)(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.out_dim = net.fc.in_features  # 512 (18/34) or 2048 (50)
    net.fc = nn.Identity()
    return net


def build_encoder(name: str, in_channels: int = 3, weights: str | Path | None = None) -> nn.Module:
    """An encoder mapping (B, C, H, W) → h (B, out_dim); `encoder.out_dim` gives the width.

    name: resnet18 | resnet34 | resnet50 | small_cnn. weights: None (random init, the default)
    or a local state-dict file (e.g. ImageNet weights saved elsewhere); never downloads.
    """
    if name in RESNETS:
        encoder = _resnet(name, in_channels)
    elif name == "small_cnn":
        encoder = SmallCNN(in_channels)
    else:
        raise ValueError(f"encoder: unknown name {name!r}; choose one of {', '.join(ENCODERS)}")
    if weights is not None:
        load_weights(encoder, weights)
    return encoder


def load_weights(module: nn.Module, path: str | Path) -> None:
    """Load a state dict from a local file into module, strictly; errors are one line.

    Accepts a bare state dict or a dict holding one under "state_dict" / "model". A ResNet
    ImageNet file's fc.* keys are ignored (the encoder has no fc).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights: no such file {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt file
        raise ValueError(f"encoder weights: cannot read {path}: {type(exc).__name__}") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise ValueError(
            f"encoder weights: {path} holds a {type(state).__name__}, not a state dict"
        )
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}
    check_state_dict(module, state, str(path))
    module.load_state_dict(state, strict=True)


def check_state_dict(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Raise a one-line ValueError naming `source` and the first missing, unexpected or
    mis-shaped key between module's state dict and `state`."""
    own = module.state_dict()
    for key, value in own.items():
        if key not in state:
            raise ValueError(f"{source}: missing key {key!r} (another architecture?)")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ValueError(
                f"{source}: key {key!r} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(value.shape)} (another architecture?)"
            )
    extra = [key for key in state if key not in own]
    if extra:
        raise ValueError(f"{source}: unexpected key {extra[0]!r} (another architecture?)")


class ProjectionHead(nn.Module):
    """SimCLR's g(·): Linear(d, d)–ReLU–Linear(d, out_dim); z lives here, h is kept for use."""

    def __init__(self, in_dim: int, out_dim: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim)
        )

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)  # (B, out_dim)


class SimCLRModel(nn.Module):
    """Encoder f plus projection head g: x (B, C, H, W) → (h (B, d), z (B, out_dim))."""

    def __init__(self, encoder: nn.Module, projection_dim: int = 256) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = ProjectionHead(encoder.out_dim, projection_dim)

    @property
    def out_dim(self) -> int:
        return self.encoder.out_dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)  # (B, d)
        return h, self.head(h)  # (B, d), (B, projection_dim)
