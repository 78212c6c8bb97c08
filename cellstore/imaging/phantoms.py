"""Small synthetic 3-channel fields with known nucleus centres, for tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHANNELS = ("dapi", "tubulin", "actin")


@dataclass(frozen=True)
class Phantom:
    """A painted field: uint16 channel images (H, W) and the true nucleus centres (N, 2) as x, y."""

    channels: dict[str, np.ndarray]
    centres: np.ndarray


def _paint_ellipse(
    image: np.ndarray, cx: float, cy: float, rx: float, ry: float, angle: float, peak: float
) -> None:
    """Add a soft-edged ellipse (plateau `peak`, ~1 px sigmoid edge) in place."""
    reach = int(np.ceil(max(rx, ry) + 3))
    y0, y1 = max(0, int(cy) - reach), min(image.shape[0], int(cy) + reach + 1)
    x0, x1 = max(0, int(cx) - reach), min(image.shape[1], int(cx) + reach + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = (dx * cos + dy * sin) / rx, (-dx * sin + dy * cos) / ry
    radius = np.sqrt(u * u + v * v)  # 1.0 on the ellipse outline
    edge_px = (radius - 1.0) * min(rx, ry)
    image[y0:y1, x0:x1] += peak / (1.0 + np.exp(np.clip(edge_px / 0.8, -30, 30)))


def paint_field(
    seed: int = 0,
    *,
    height: int = 256,
    width: int = 320,
    n_cells: int = 30,
    diameter: float = 20.0,
    touching_pairs: int = 3,
    background: float = 400.0,
    brightness: float = 6000.0,
    vignetting: float = 0.0,
) -> Phantom:
    """Paint a field of roughly round nuclei inside larger cytoplasm blobs.

    Nuclei never overlap by more than a narrow neck: isolated ones are at least 1.3 diameters
    apart; `touching_pairs` pairs sit 0.85 diameters apart (touching, separable by a
    distance-transform watershed). `vignetting` in [0, 1) darkens the corners by that fraction.
    """
    rng = np.random.default_rng(seed)
    margin = diameter * 0.7
    centres: list[tuple[float, float]] = []

    def free(x: float, y: float, min_dist: float) -> bool:
        return all((x - cx) ** 2 + (y - cy) ** 2 >= min_dist**2 for cx, cy in centres)

    attempts = 0
    n_single = max(0, n_cells - 2 * touching_pairs)
    while len(centres) < n_single and attempts < 20000:
        attempts += 1
        x, y = rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)
        if free(x, y, 1.3 * diameter):
            centres.append((x, y))
    for _ in range(touching_pairs):
        for _ in range(2000):
            x, y = (
                rng.uniform(2 * margin, width - 2 * margin),
                rng.uniform(2 * margin, height - 2 * margin),
            )
            theta = rng.uniform(0, np.pi)
            half = 0.425 * diameter
            a = (x - half * np.cos(theta), y - half * np.sin(theta))
            b = (x + half * np.cos(theta), y + half * np.sin(theta))
            if free(*a, 1.3 * diameter) and free(*b, 1.3 * diameter):
                centres.extend([a, b])
                break

    images = {name: np.zeros((height, width), np.float32) for name in CHANNELS}
    for cx, cy in centres:
        r = diameter / 2 * rng.uniform(0.9, 1.1)
        aspect = rng.uniform(0.85, 1.0)
        angle = rng.uniform(0, np.pi)
        _paint_ellipse(
            images["dapi"], cx, cy, r, r * aspect, angle, brightness * rng.uniform(0.7, 1.3)
        )
        _paint_ellipse(images["tubulin"], cx, cy, 2.2 * r, 1.8 * r, angle, brightness * 0.3)
        _paint_ellipse(images["actin"], cx, cy, 2.4 * r, 2.0 * r, angle, brightness * 0.2)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    falloff = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (height / 2)) ** 2
    shading = 1.0 - vignetting * falloff / 2.0
    out: dict[str, np.ndarray] = {}
    for name, image in images.items():
        texture = 1.0 + 0.15 * rng.standard_normal(image.shape).astype(np.float32)
        signal = (background + image * texture) * shading
        noisy = signal + rng.normal(0, np.sqrt(signal)).astype(np.float32)
        out[name] = np.clip(noisy, 0, 65535).astype(np.uint16)
    return Phantom(channels=out, centres=np.asarray(centres, np.float64).reshape(-1, 2))
