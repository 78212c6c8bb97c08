"""NT-Xent against a naive double loop, its settings, and DDP (gloo, 2 processes) equivalence."""

from __future__ import annotations

import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from cellstore.ssl.loss import NTXentLoss


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster here and immune to busy neighbours."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """Chen et al. 2020 eq. 1, one view at a time, in float64 Python arithmetic."""
    views = [v.double() for v in torch.cat([z1, z2])]
    n = len(z1)

    def sim(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(a @ b / (a.norm() * b.norm()))

    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        numerator = math.exp(sim(views[i], views[positive]) / temperature)
        denominator = sum(
            math.exp(sim(views[i], views[k]) / temperature) for k in range(2 * n) if k != i
        )
        total += -math.log(numerator / denominator)
    return total / (2 * n)


def naive_top1(z1: torch.Tensor, z2: torch.Tensor) -> float:
    views = torch.nn.functional.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = len(z1)
    hits = 0
    for i in range(2 * n):
        best = max((k for k in range(2 * n) if k != i), key=lambda k: float(views[i] @ views[k]))
        hits += best == (i + n) % (2 * n)
    return hits / (2 * n)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 6),
    d=st.integers(2, 8),
    temperature=st.sampled_from([0.05, 0.1, 0.5, 1.0, 2.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_nt_xent_matches_naive_loop(n, d, temperature, seed):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    z2 = torch.randn(n, d, generator=g, dtype=torch.float64)
    loss = NTXentLoss(temperature)(z1, z2)
    # the module computes in float32: compare with a relative tolerance at that precision
    assert float(loss) == pytest.approx(naive_nt_xent(z1, z2, temperature), rel=1e-6, abs=1e-6)


def test_nt_xent_matches_naive_loop_float32_batch():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(16, 32, generator=g), torch.randn(16, 32, generator=g)
    for temperature in (0.1, 0.5, 1.0):
        expected = naive_nt_xent(z1, z2, temperature)
        assert abs(float(NTXentLoss(temperature)(z1, z2)) - expected) < 1e-6 * max(1, expected)


def test_top1_accuracy_matches_naive_count():
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(12, 4, generator=g)
    z2 = z1 + 0.8 * torch.randn(12, 4, generator=g)  # a noisy positive: some hits, some misses
    _, top1 = NTXentLoss(0.1)(z1, z2, return_accuracy=True)
    expected = naive_top1(z1, z2)
    assert 0 < expected < 1
    assert float(top1) == pytest.approx(expected)


def test_identical_views_give_perfect_top1_and_lower_loss():
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(2))
    loss_same, top1 = NTXentLoss(0.1)(z, z.clone(), return_accuracy=True)
    loss_random = NTXentLoss(0.1)(z, torch.randn(8, 16))
    assert float(top1) == 1.0
    assert float(loss_same) < float(loss_random)


@pytest.mark.parametrize("temperature", [0, -0.1, float("nan"), float("inf"), "0.1"])
def test_temperature_must_be_positive_and_finite(temperature):
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature)


def test_views_of_different_shape_are_an_error():
    with pytest.raises(ValueError, match="two"):
        NTXentLoss()(torch.randn(4, 8), torch.randn(3, 8))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 5))


def _ddp_step(rank: int, world: int, port: int, x1, x2, out_dir) -> None:
    """One DDP step on this rank's half of the batch; loss and gradients saved to out_dir."""
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.set_num_threads(1)
        model = torch.nn.parallel.DistributedDataParallel(_tiny_model())
        n = len(x1) // world
        part = slice(rank * n, (rank + 1) * n)
        loss = NTXentLoss(0.2)(model(x1[part]), model(x2[part]))
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        torch.save({"loss": loss.detach(), "grads": grads}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_match_one_process_on_the_concatenated_batch(tmp_path):
    g = torch.Generator().manual_seed(3)
    x1, x2 = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)

    model = _tiny_model()
    loss = NTXentLoss(0.2)(model(x1), model(x2))
    loss.backward()
    expected_grads = [p.grad for p in model.parameters()]

    mp.spawn(_ddp_step, args=(2, _free_port(), x1, x2, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert float(result["loss"]) == pytest.approx(loss.item(), abs=1e-5)
        for got, want in zip(result["grads"], expected_grads, strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
