"""SimCLRAugment: per-sample parameters, per-channel jitter, shapes, determinism, oracles."""

from __future__ import annotations

import kornia.augmentation as K
import pytest
import torch
import torch.nn.functional as F

from cellstore.ssl.augment import (
    RandomBlur,
    RandomChannelJitter,
    RandomElastic,
    SimCLRAugment,
    banded_filter,
    odd_kernel,
    prepare,
)

MEAN, STD = (0.1, 0.2, 0.3), (0.2, 0.25, 0.3)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster here and immune to busy neighbours."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cell_image(size: int = 24) -> torch.Tensor:
    """An asymmetric 3-channel uint8 'cell' (1, 3, size, size): no flip or rotation fixes it."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    img = torch.stack([(x * 7 + y * 3) % 256, (x * y) % 256, (255 - 5 * y) % 256])
    img[:, 2:6, 3:9] = 255
    return img.to(torch.uint8)[None]


def test_two_samples_of_one_batch_get_different_parameters():
    aug = SimCLRAugment(24, MEAN, STD)
    batch = cell_image().repeat(8, 1, 1, 1)  # the same image 8 times
    out = aug(batch, seed=0)
    flat = out.flatten(1)
    distances = torch.cdist(flat, flat)
    assert (distances + torch.eye(8) * 1e9).min() > 1e-3  # all 8 views differ
    rrc, *_, elastic, jitter, blur = aug.augment
    assert len({tuple(b.flatten().tolist()) for b in rrc._params["src"]}) == 8  # crop boxes
    assert len(set(blur._params["sigma"].tolist())) == 8
    assert len(set(jitter._params["brightness_factor"][:, 0].tolist())) == 8
    noise = elastic._params["noise"]
    assert not torch.equal(noise[0], noise[1])


def test_channel_jitter_draws_one_factor_per_channel():
    jitter = RandomChannelJitter(brightness=0.4, contrast=0.4, p=1.0)
    x = torch.full((4, 3, 8, 8), 0.5)
    x[..., :4] = 0.3  # some contrast to scale
    out = jitter(x)
    for key in ("brightness_factor", "contrast_factor"):
        factors = jitter._params[key]  # (B, C)
        assert factors.shape == (4, 3)
        assert (factors.std(dim=1) > 0).all()  # channels of one sample differ
        assert ((factors >= 0.6) & (factors <= 1.4)).all()
    for c in range(1, 3):  # identical input channels come out different
        assert not torch.allclose(out[:, 0], out[:, c])


def test_channel_jitter_formula():
    jitter = RandomChannelJitter(p=1.0)
    x = torch.rand(2, 3, 5, 5)
    out = jitter(x)
    b = jitter._params["brightness_factor"][:, :, None, None]
    c = jitter._params["contrast_factor"][:, :, None, None]
    m = x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(out, ((x - m) * c + m * b).clamp(0, 1))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_output_is_float_on_the_input_device_with_the_training_size(dtype):
    batch = cell_image(32).repeat(3, 1, 1, 1)
    if dtype.is_floating_point:
        batch = batch.float() / 255
    out = SimCLRAugment(32, MEAN, STD)(batch, seed=1)
    assert out.dtype == torch.float32 and out.device == batch.device
    assert out.shape == batch.shape
    small = SimCLRAugment(16, MEAN, STD)(batch, seed=1)
    assert small.shape == (3, 3, 16, 16)
    assert torch.isfinite(small).all()


def test_no_hue_saturation_or_grayscale_ops():
    forbidden = (
        K.ColorJitter,
        K.ColorJiggle,
        K.RandomHue,
        K.RandomSaturation,
        K.RandomGrayscale,
        K.RandomChannelShuffle,
        K.RandomPlanckianJitter,
    )
    ops = list(SimCLRAugment(48, MEAN, STD).modules())
    assert not [op for op in ops if isinstance(op, forbidden)]
    kinds = {type(op) for op in ops}
    assert {
        K.RandomResizedCrop,
        K.RandomHorizontalFlip,
        K.RandomVerticalFlip,
        K.RandomRotation90,
        RandomElastic,
        RandomChannelJitter,
        RandomBlur,
    } <= kinds


def test_paper_settings():
    aug = SimCLRAugment(96, MEAN, STD)
    rrc, hflip, vflip, rot, elastic, jitter, blur = aug.augment
    assert rrc.flags["size"] == (96, 96)
    assert blur.flags["kernel_size"] == 9  # the paper's kernel 9 at 96 px
    assert (hflip.p, vflip.p, elastic.p, jitter.p, blur.p) == (0.5, 0.5, 0.5, 0.8, 0.5)
    assert odd_kernel(48, 0.1) == 5


def test_seed_makes_views_reproducible_and_leaves_the_global_rng_alone():
    aug = SimCLRAugment(24, MEAN, STD)
    batch = cell_image().repeat(4, 1, 1, 1)
    state = torch.get_rng_state()
    a = aug(batch, seed=11)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, aug(batch, seed=11))
    assert not torch.equal(a, aug(batch, seed=12))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(aug(batch, generator=g1), aug(batch, generator=g2))


def test_wrong_channel_count_is_an_error():
    with pytest.raises(ValueError, match=r"expected \(B, 3, H, W\)"):
        SimCLRAugment(24, MEAN, STD)(torch.zeros(2, 1, 24, 24))


@pytest.mark.parametrize("border", ["constant", "reflect"])
def test_banded_filter_equals_a_padded_convolution(border):
    kernel = torch.rand(2, 5)
    x = torch.rand(2, 11)
    got = (banded_filter(kernel, 11, border) @ x[:, :, None])[:, :, 0]
    padded = F.pad(x[:, None], (2, 2), mode="constant" if border == "constant" else "reflect")
    want = torch.stack(
        [F.conv1d(padded[i : i + 1], kernel[i].view(1, 1, 5))[0, 0] for i in range(2)]
    )
    torch.testing.assert_close(got, want)


def test_fast_elastic_and_blur_equal_kornia():
    x = torch.rand(6, 3, 20, 20)
    elastic = dict(
        kernel_size=(7, 7), sigma=(2.0, 2.0), alpha=(1.0, 1.0), padding_mode="border", p=1.0
    )
    ours = RandomElastic(**elastic)
    out = ours(x)
    torch.testing.assert_close(
        out, K.RandomElasticTransform(**elastic)(x, params=ours._params), atol=1e-5, rtol=0
    )
    blur = dict(kernel_size=5, sigma=(0.1, 2.0), p=1.0)
    ours = RandomBlur(**blur)
    out = ours(x)
    torch.testing.assert_close(
        out, K.RandomGaussianBlur(**blur)(x, params=ours._params), atol=1e-6, rtol=0
    )


def test_prepare_resizes_and_normalises_without_augmentation():
    batch = cell_image(24).repeat(2, 1, 1, 1)
    same = prepare(batch, 24, MEAN, STD)
    expected = (batch.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(same, expected)
    assert torch.equal(prepare(batch, 24, MEAN, STD), same)  # deterministic
    small = prepare(batch, 12, MEAN, STD)
    assert small.shape == (2, 3, 12, 12) and small.dtype == torch.float32
    flat = prepare(torch.full((1, 3, 24, 24), 51, dtype=torch.uint8), 12, MEAN, STD)
    torch.testing.assert_close(
        flat, ((0.2 - torch.tensor(MEAN)) / torch.tensor(STD)).view(1, 3, 1, 1).expand(1, 3, 12, 12)
    )


@pytest.mark.gpu
def test_augment_runs_on_cuda():
    batch = cell_image(48).repeat(16, 1, 1, 1).cuda()
    aug = SimCLRAugment(48, MEAN, STD)
    out = aug(batch, seed=0)
    assert out.device == batch.device and out.dtype == torch.float32
    assert aug.augment[4]._params["noise"].device.type == "cuda"  # sampled on the GPU
    assert torch.equal(out, aug(batch, seed=0))


def test_prepare_equals_a_full_scale_training_crop():
    batch = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)
    full = K.RandomResizedCrop((20, 20), scale=(1, 1), ratio=(1, 1), cropping_mode="resample")
    torch.testing.assert_close(
        prepare(batch, 20, (0, 0, 0), (1, 1, 1)), full(batch.float() / 255), atol=1e-4, rtol=0
    )
