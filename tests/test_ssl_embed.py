"""embed: h features of crops, batched, no augmentation, equal to a direct encoder pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellstore.ssl.augment import prepare
from cellstore.ssl.embed import embed
from cellstore.ssl.encoder import SimCLRModel, build_encoder

MEAN, STD = (0.2, 0.3, 0.4), (0.1, 0.2, 0.3)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster here and immune to busy neighbours."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_embed_equals_the_encoder_on_prepared_crops():
    torch.manual_seed(0)
    model = SimCLRModel(build_encoder("small_cnn")).train()
    crops = torch.randint(0, 256, (10, 3, 20, 20), dtype=torch.uint8)
    batches = [crops[:4], crops[4:8].numpy(), crops[8:]]
    h = embed(model, batches, 16, MEAN, STD, device="cpu")
    assert h.dtype == np.float32 and h.shape == (10, 256)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        expected = model.encoder(prepare(crops, 16, MEAN, STD)).numpy()
    np.testing.assert_allclose(h, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(h, embed(model.encoder, batches, 16, MEAN, STD, "cpu"))


def test_embed_without_batches_is_an_error():
    with pytest.raises(ValueError, match="no batches"):
        embed(build_encoder("small_cnn"), [], 16, MEAN, STD, "cpu")
