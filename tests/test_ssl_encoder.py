"""Encoders: feature widths, projection head, local state-dict loading and its one-line errors."""

from __future__ import annotations

import pytest
import torch

from cellstore.ssl.encoder import ProjectionHead, SimCLRModel, build_encoder


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster here and immune to busy neighbours."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "name, dim", [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048), ("small_cnn", 256)]
)
def test_encoder_feature_width(name, dim):
    encoder = build_encoder(name).eval()
    with torch.no_grad():
        h = encoder(torch.rand(2, 3, 32, 32))
    assert encoder.out_dim == dim
    assert h.shape == (2, dim)


def test_other_channel_counts():
    for name in ("resnet18", "small_cnn"):
        assert build_encoder(name, in_channels=5)(torch.rand(2, 5, 32, 32)).shape[0] == 2


def test_simclr_model_returns_h_and_z():
    model = SimCLRModel(build_encoder("small_cnn"))
    h, z = model(torch.rand(4, 3, 48, 48))
    assert h.shape == (4, 256) and z.shape == (4, 256)
    head = model.head.net
    assert [type(m).__name__ for m in head] == ["Linear", "ReLU", "Linear"]
    assert (head[0].in_features, head[0].out_features, head[2].out_features) == (256, 256, 256)
    assert ProjectionHead(2048).net[0].out_features == 2048  # the paper's Linear(2048, 2048)


def test_unknown_encoder_is_an_error():
    with pytest.raises(ValueError, match="resnet18, resnet34, resnet50, small_cnn"):
        build_encoder("vit")


def test_loads_a_local_state_dict(tmp_path):
    source = build_encoder("resnet18")
    path = tmp_path / "weights.pt"
    # an ImageNet-style file: DDP "module." prefixes and an fc layer the encoder does not have
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torch.save({"state_dict": state}, path)
    loaded = build_encoder("resnet18", weights=path)
    for (k, a), b in zip(source.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert not torch.equal(
        build_encoder("resnet18").conv1.weight, loaded.conv1.weight
    )  # default: random init


def test_missing_weights_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "absent.pt"
    with pytest.raises(FileNotFoundError) as err:
        build_encoder("small_cnn", weights=path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_mismatched_weights_are_a_one_line_error_naming_file_and_key(tmp_path):
    path = tmp_path / "r18.pt"
    torch.save(build_encoder("resnet18").state_dict(), path)
    with pytest.raises(ValueError) as err:
        build_encoder("resnet50", weights=path)
    message = str(err.value)
    assert str(path) in message and "'layer1.0.conv1.weight'" in message
    assert "\n" not in message
    small = tmp_path / "small.pt"
    torch.save(build_encoder("small_cnn").state_dict(), small)
    with pytest.raises(ValueError, match="missing key 'conv1.weight'"):
        build_encoder("resnet18", weights=small)


def test_corrupt_weights_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        build_encoder("small_cnn", weights=path)
