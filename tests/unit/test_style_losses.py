"""The non-saturating logistic loss with R1, against hand-computed values; picking a loss by optim.loss."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from pggan.config import ModelConfig, OptimConfig
from pggan.losses import (D_STAT_NAMES, d_loss_logistic_r1, d_loss_wgan_gp, g_loss_logistic_ns, g_loss_wgan,
                          losses_for)
from pggan.nn.factory import make_discriminator, make_generator


class LinearCritic(torch.nn.Module):
    """D(x) = <a, x> + b: grad_x D = a for every image, so R1 = ||a||^2 exactly."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(shape))
        self.b = torch.nn.Parameter(torch.tensor(0.3))

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        return (x * self.a).sum(dim=[1, 2, 3]) + self.b


class QuadraticCritic(torch.nn.Module):
    """D(x) = c * sum(x^2) / 2: grad_x D = c * x, so R1 = c^2 * ||x||^2, different for every image."""

    def __init__(self):
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor(0.7))

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        return self.c * x.square().sum(dim=[1, 2, 3]) / 2


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_r1_of_a_linear_critic_is_the_squared_norm_of_its_weights_and_trains_them() -> None:
    D = LinearCritic((3, 4, 4))
    reals, fakes = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    gamma = 10.0
    loss, stats = d_loss_logistic_r1(D, reals, fakes, 1.0, r1_gamma=gamma)
    a, b = D.a.detach(), D.b.detach()
    real, fake = (reals * a).sum(dim=[1, 2, 3]) + b, (fakes * a).sum(dim=[1, 2, 3]) + b
    norm2 = a.square().sum()
    expected = (F.softplus(fake) + F.softplus(-real)).mean() + gamma / 2 * norm2
    assert stats["r1"] == pytest.approx(norm2.item(), rel=1e-5)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["real_score"] == pytest.approx(real.mean().item(), rel=1e-5, abs=1e-6)
    loss.backward()
    # d/da of the loss by hand: sigmoid(fake) * fakes - sigmoid(-real) * reals, averaged, plus gamma * a.
    grad = (torch.sigmoid(fake).reshape(-1, 1, 1, 1) * fakes
            - torch.sigmoid(-real).reshape(-1, 1, 1, 1) * reals).mean(dim=0) + gamma * a
    torch.testing.assert_close(D.a.grad, grad, rtol=1e-4, atol=1e-5)


def test_r1_is_per_image_at_the_reals_not_the_fakes() -> None:
    D = QuadraticCritic()
    reals, fakes = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2) * 5
    _, stats = d_loss_logistic_r1(D, reals, fakes, 1.0, r1_gamma=2.0)
    by_hand = (0.7 ** 2 * reals.square().sum(dim=[1, 2, 3])).mean()
    assert stats["r1"] == pytest.approx(by_hand.item(), rel=1e-5)


def test_gamma_0_is_the_plain_logistic_loss() -> None:
    D = LinearCritic((3, 4, 4))
    reals, fakes = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    loss, stats = d_loss_logistic_r1(D, reals, fakes, 1.0, r1_gamma=0.0)
    plain = (F.softplus(D(fakes)) + F.softplus(-D(reals))).mean()
    assert stats["r1"] == 0.0 and loss.item() == pytest.approx(plain.item(), rel=1e-6)


def test_g_loss_is_non_saturating() -> None:
    D = LinearCritic((3, 4, 4))
    fakes = torch.randn(5, 3, 4, 4)
    loss, stats = g_loss_logistic_ns(D, fakes, 1.0)
    assert loss.item() == pytest.approx(F.softplus(-D(fakes)).mean().item(), rel=1e-6)
    assert stats == {"g_loss": pytest.approx(loss.item())}


def test_losses_for_picks_by_optim_loss_and_binds_the_weights() -> None:
    D = LinearCritic((3, 4, 4))
    reals, fakes = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    d_loss, g_loss = losses_for(OptimConfig(loss="logistic-r1", r1_gamma=4.0, aux_weight=2.0))
    assert g_loss.func is g_loss_logistic_ns and g_loss.keywords == {"aux_weight": 2.0}
    loss, stats = d_loss(D, reals, fakes, 1.0)
    assert tuple(stats) == D_STAT_NAMES["logistic-r1"]
    assert loss.item() == pytest.approx(d_loss_logistic_r1(D, reals, fakes, 1.0, r1_gamma=4.0)[0].item())
    d_loss, g_loss = losses_for(OptimConfig(gp_lambda=3.0, drift=0.01))
    assert g_loss.func is g_loss_wgan and g_loss.keywords == {"aux_weight": 1.0}
    torch.manual_seed(1)
    loss, stats = d_loss(D, reals, fakes, 1.0)
    torch.manual_seed(1)
    assert loss.item() == pytest.approx(d_loss_wgan_gp(D, reals, fakes, 1.0, 3.0, 0.01)[0].item())
    assert tuple(stats) == D_STAT_NAMES["wgan-gp"]
    with pytest.raises(ValueError, match="optim.loss='hinge'"):
        losses_for(OptimConfig(loss="hinge"))


def test_one_logistic_r1_step_trains_a_stylegan_pair_on_cpu() -> None:
    """Smoke: D and G updates through the real networks (R1's double backward through the blurred D)."""
    model = ModelConfig(latent_dim=16, fmap_base=64, fmap_max=16, arch="stylegan", mapping_layers=2)
    G, D = make_generator(model, 8), make_discriminator(model, 8)
    opt_G = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.0, 0.99))
    opt_D = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.0, 0.99))
    d_loss_fn, g_loss_fn = losses_for(dataclasses.replace(OptimConfig(), loss="logistic-r1"))
    reals = torch.rand(8, 3, 8, 8) * 2 - 1
    before = [p.detach().clone() for p in D.parameters()]
    with torch.no_grad():
        fakes = G(torch.randn(8, 16), 0.5)
    d_loss, stats = d_loss_fn(D, reals, fakes, 0.5)
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values()) and stats["r1"] > 0
    assert all(not torch.equal(b, p) for b, p in zip(before, D.parameters()))
    g_loss, _ = g_loss_fn(D, G(torch.randn(8, 16), 0.5), 0.5)
    opt_G.zero_grad()
    g_loss.backward()
    assert G.mapping.fc0.weight.grad.abs().sum() > 0
