"""WGAN-GP + drift pinned against hand-computed cases; the penalty stays fp32 under bf16 autocast."""
from __future__ import annotations

import math

import pytest
import torch

from pggan.config import ModelConfig
from pggan.losses import d_loss_wgan_gp, g_loss_wgan, gradient_penalty
from pggan.nn.networks import Discriminator, Generator


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


class LinearCritic(torch.nn.Module):
    """D(x) = <w, x> + b: its input gradient is w everywhere, so ||grad|| = ||w|| for every x_hat."""

    def __init__(self, w: torch.Tensor, b: float = 0.0):
        super().__init__()
        self.w = torch.nn.Parameter(w.clone())
        self.b = torch.nn.Parameter(torch.tensor(b))

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        return (x * self.w).sum(dim=[1, 2, 3]) + self.b


class QuadraticCritic(torch.nn.Module):
    """D(x) = ||x||^2 / 2: grad = x_hat, so with reals = 0 the gradient norm is u * ||fake||."""

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        return x.square().sum(dim=[1, 2, 3]) / 2


def test_d_loss_matches_hand_computed_linear_critic() -> None:
    w = torch.full((1, 3, 2, 2), 0.5)                                       # ||w|| = sqrt(12 * 0.25) = sqrt(3)
    D = LinearCritic(w, b=0.1)
    reals = torch.ones(2, 3, 2, 2)                                          # D(real) = 6 + 0.1
    fakes = -torch.ones(2, 3, 2, 2)                                         # D(fake) = -6 + 0.1
    loss, stats = d_loss_wgan_gp(D, reals, fakes, alpha=1.0, gp_lambda=10.0, drift=0.001)
    gp = (math.sqrt(3) - 1) ** 2
    expected = (-5.9 - 6.1) + 10.0 * gp + 0.001 * 6.1 ** 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert stats["gp"] == pytest.approx(gp, rel=1e-5)
    assert stats["drift"] == pytest.approx(6.1 ** 2, rel=1e-5)
    assert stats["wdist"] == pytest.approx(12.0, rel=1e-5)
    assert stats["d_loss"] == pytest.approx(expected, rel=1e-5)
    assert all(isinstance(v, float) for v in stats.values())


def test_gp_target_scales_the_penalty_as_in_the_official_code() -> None:
    w = torch.full((1, 3, 2, 2), 0.5)                                       # ||w|| = sqrt(3)
    reals, fakes = torch.zeros(4, 3, 2, 2), torch.ones(4, 3, 2, 2)
    gp = gradient_penalty(LinearCritic(w), reals, fakes, 1.0, gp_target=750.0)
    assert torch.allclose(gp, torch.full((4,), (math.sqrt(3) - 750) ** 2 / 750 ** 2))


def test_penalty_is_taken_at_a_uniform_random_point_per_sample() -> None:
    # reals = 0, ||fake|| = 1: the norm at x_hat = u * fake is u, the penalty (u - 1)^2, its mean E[(1-u)^2] = 1/3.
    n = 4096
    reals = torch.zeros(n, 3, 2, 2)
    fakes = torch.full((n, 3, 2, 2), 1 / math.sqrt(12))
    gp = gradient_penalty(QuadraticCritic(), reals, fakes, 1.0)
    assert gp.shape == (n,)
    assert gp.min().item() >= 0.0 and gp.max().item() <= 1.0
    assert gp.mean().item() == pytest.approx(1 / 3, abs=0.02)
    assert gp.std().item() > 0.2                                           # per-sample u, not one per batch


def test_penalty_gradient_trains_the_critic() -> None:
    # d/dw of 10 * (||w|| - 1)^2 = 20 (||w|| - 1) w / ||w||; the loss's other terms add mean(fake - real) + drift.
    w = torch.full((1, 3, 2, 2), 0.5)
    D = LinearCritic(w)
    reals, fakes = torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 2, 2)
    loss, _ = d_loss_wgan_gp(D, reals, fakes, 1.0)
    loss.backward()
    norm = math.sqrt(3)
    assert torch.allclose(D.w.grad, torch.full_like(w, 20 * (norm - 1) * 0.5 / norm), atol=1e-5)


def test_d_loss_does_not_backpropagate_into_the_generator() -> None:
    G = Generator(ModelConfig(latent_dim=8, fmap_base=32, fmap_max=8), 8)
    D = Discriminator(ModelConfig(latent_dim=8, fmap_base=32, fmap_max=8), 8)
    fakes = G(torch.randn(4, 8), 0.5)
    loss, _ = d_loss_wgan_gp(D, torch.randn(4, 3, 8, 8), fakes, 0.5)
    loss.backward()
    assert all(p.grad is None for p in G.parameters())
    assert all(p.grad is not None for p in D.parameters())


def test_g_loss_is_minus_mean_critic_score_and_trains_the_generator() -> None:
    G = Generator(ModelConfig(latent_dim=8, fmap_base=32, fmap_max=8), 8)
    D = Discriminator(ModelConfig(latent_dim=8, fmap_base=32, fmap_max=8), 8)
    fakes = G(torch.randn(4, 8), 0.5)
    loss, stats = g_loss_wgan(D, fakes, 0.5)
    assert loss.item() == pytest.approx(-D(fakes, 0.5).mean().item(), rel=1e-5)
    assert stats == {"g_loss": pytest.approx(loss.item())}
    loss.backward()
    assert all(p.grad is not None for p in G.parameters())


def test_gradient_penalty_is_fp32_under_bf16_autocast() -> None:
    model = ModelConfig(latent_dim=8, fmap_base=64, fmap_max=16)
    D = Discriminator(model, 8)
    reals, fakes = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    seen: list[torch.dtype] = []
    D.b4.out.register_forward_hook(lambda m, i, o: seen.append(o.dtype))

    torch.manual_seed(1)
    reference = gradient_penalty(D, reals, fakes, 0.5)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = gradient_penalty(D, reals, fakes, 0.5)
        loss, _ = d_loss_wgan_gp(D, reals, fakes, 0.5)
    assert under_autocast.dtype == torch.float32
    # bf16 would be off in the 3rd significant digit; fp32 agrees to rounding.
    assert torch.allclose(under_autocast, reference, rtol=1e-5, atol=1e-6)
    # d_loss: D(real) and D(fake) ran in bf16 (autocast is active), the penalty forward in fp32.
    assert seen[:2] == [torch.float32, torch.float32]
    assert seen[2:] == [torch.bfloat16, torch.bfloat16, torch.float32]
    assert loss.dtype == torch.float32
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in D.parameters())
