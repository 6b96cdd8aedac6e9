"""AC-GAN terms (official D_wgangp_acgan / G_wgan_acgan) pinned against hand-computed cross-entropies; the
gradient penalty sees only the score; labels and D must agree on being conditional."""
from __future__ import annotations

import math

import pytest
import torch

from pggan.config import ModelConfig
from pggan.losses import (class_cross_entropy, d_aux_terms, d_loss_wgan_gp, g_aux_terms, g_loss_wgan,
                          gradient_penalty)
from pggan.nn.networks import Discriminator, Generator, split_d_output

K = 3
LN2, LN3 = math.log(2), math.log(3)


class LinearConditionalCritic(torch.nn.Module):
    """out = [<w, x> + b, mean(x) * c]: score gradient w everywhere (||grad|| = ||w||), logits c * mean(x)."""

    def __init__(self, w: torch.Tensor, b: float, c: torch.Tensor):
        super().__init__()
        self.w = torch.nn.Parameter(w.clone())
        self.b = torch.nn.Parameter(torch.tensor(b))
        self.c = torch.nn.Parameter(c.clone())

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        score = (x * self.w).sum(dim=[1, 2, 3]) + self.b                  # [N]
        logits = x.mean(dim=[1, 2, 3])[:, None] * self.c                   # [N, K]
        return torch.cat([score[:, None], logits], dim=1)                   # [N, 1 + K]


def critic() -> LinearConditionalCritic:
    # Reals (ones): score 6.1, logits [ln2, ln3, 0] -> softmax [2, 3, 1] / 6.
    # Fakes (-ones): score -5.9, logits [-ln2, -ln3, 0] -> softmax [1/2, 1/3, 1] / (11/6).
    return LinearConditionalCritic(torch.full((1, 3, 2, 2), 0.5), 0.1, torch.tensor([LN2, LN3, 0.0]))


REALS, FAKES = torch.ones(2, 3, 2, 2), -torch.ones(2, 3, 2, 2)
REAL_LABELS, FAKE_LABELS = torch.tensor([1, 0]), torch.tensor([0, 2])
CE_REAL = [math.log(6 / 3), math.log(6 / 2)]                               # -log p(1), -log p(0) for reals
CE_FAKE = [math.log((11 / 6) / (1 / 2)), math.log((11 / 6) / 1)]           # -log p(0), -log p(2) for fakes


def test_class_cross_entropy_is_minus_log_softmax_of_the_label() -> None:
    logits = torch.tensor([[LN2, LN3, 0.0], [0.0, 0.0, 0.0]])
    ce = class_cross_entropy(logits, torch.tensor([1, 2]))
    assert torch.allclose(ce, torch.tensor([math.log(2), math.log(3)]), atol=1e-6)


def test_d_loss_adds_weighted_cross_entropy_of_reals_and_fakes() -> None:
    loss, stats = d_loss_wgan_gp(critic(), REALS, FAKES, 1.0, gp_lambda=10.0, drift=0.001,
                                 real_labels=REAL_LABELS, fake_labels=FAKE_LABELS, aux_weight=0.5)
    gp = (math.sqrt(3) - 1) ** 2                                            # ||w|| = sqrt(3), the score's only
    wgan = (-5.9 - 6.1) + 10.0 * gp + 0.001 * 6.1 ** 2
    aux = (CE_REAL[0] + CE_FAKE[0] + CE_REAL[1] + CE_FAKE[1]) / 2          # mean over samples of real + fake
    assert loss.item() == pytest.approx(wgan + 0.5 * aux, rel=1e-5)
    assert stats["d_loss"] == pytest.approx(wgan + 0.5 * aux, rel=1e-5)
    assert stats["gp"] == pytest.approx(gp, rel=1e-5)
    assert stats["wdist"] == pytest.approx(12.0, rel=1e-5)
    assert stats["d_aux_real"] == pytest.approx(sum(CE_REAL) / 2, rel=1e-5)
    assert stats["d_aux_fake"] == pytest.approx(sum(CE_FAKE) / 2, rel=1e-5)
    # Reals' argmax is class 1 (right for the first), fakes' is class 2 (right for the second).
    assert stats["d_acc_real"] == 0.5 and stats["d_acc_fake"] == 0.5
    assert all(isinstance(v, float) for v in stats.values())


def test_aux_weight_0_leaves_the_wgan_gp_loss() -> None:
    loss, _ = d_loss_wgan_gp(critic(), REALS, FAKES, 1.0, real_labels=REAL_LABELS, fake_labels=FAKE_LABELS,
                             aux_weight=0.0)
    assert loss.item() == pytest.approx((-5.9 - 6.1) + 10.0 * (math.sqrt(3) - 1) ** 2 + 0.001 * 6.1 ** 2,
                                        rel=1e-5)


def test_g_loss_adds_weighted_cross_entropy_of_d_on_its_fakes() -> None:
    loss, stats = g_loss_wgan(critic(), FAKES, 1.0, labels=FAKE_LABELS, aux_weight=2.0)
    expected = 5.9 + 2.0 * sum(CE_FAKE) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert stats == {"g_loss": pytest.approx(expected, rel=1e-5), "g_aux": pytest.approx(sum(CE_FAKE) / 2),
                     "g_acc": 0.5}


def test_the_gradient_penalty_ignores_the_class_logits() -> None:
    # Logits steep in x (c = 100) would dominate a penalty on the whole output; the score's norm is sqrt(3).
    D = LinearConditionalCritic(torch.full((1, 3, 2, 2), 0.5), 0.0, torch.full((K,), 100.0))
    gp = gradient_penalty(D, torch.zeros(4, 3, 2, 2), torch.ones(4, 3, 2, 2), 1.0)
    assert torch.allclose(gp, torch.full((4,), (math.sqrt(3) - 1) ** 2), atol=1e-5)


def test_the_class_term_trains_the_logits_by_softmax_minus_one_hot() -> None:
    D = critic()
    loss, _ = d_loss_wgan_gp(D, REALS, FAKES, 1.0, real_labels=REAL_LABELS, fake_labels=FAKE_LABELS)
    loss.backward()
    # d/dc of mean_n [CE(c * m_n, y_n)] summed over reals (m = 1) and fakes (m = -1): m * (softmax - onehot) / 2.
    p_real = torch.tensor([2.0, 3.0, 1.0]) / 6
    p_fake = torch.tensor([0.5, 1 / 3, 1.0]) / (11 / 6)
    onehot = torch.eye(K)
    grad = ((p_real - onehot[1]) + (p_real - onehot[0]) - (p_fake - onehot[0]) - (p_fake - onehot[2])) / 2
    assert torch.allclose(D.c.grad, grad, atol=1e-5)


def test_aux_terms_take_logits_so_any_loss_can_add_them() -> None:
    # E.g. a logistic loss: softplus(D(fake)) + softplus(-D(real)) + weight * d_aux_terms.
    real_logits, fake_logits = torch.tensor([[LN2, LN3, 0.0]] * 2), torch.tensor([[-LN2, -LN3, 0.0]] * 2)
    per_sample, stats = d_aux_terms(real_logits, REAL_LABELS, fake_logits, FAKE_LABELS)
    assert torch.allclose(per_sample, torch.tensor([CE_REAL[0] + CE_FAKE[0], CE_REAL[1] + CE_FAKE[1]]),
                          atol=1e-5)
    assert set(stats) == {"d_aux_real", "d_aux_fake", "d_acc_real", "d_acc_fake"}
    g_per_sample, g_stats = g_aux_terms(fake_logits, FAKE_LABELS)
    assert torch.allclose(g_per_sample, torch.tensor(CE_FAKE), atol=1e-5)
    assert float(g_stats["g_acc"]) == 0.5


def test_labels_and_a_conditional_d_must_come_together() -> None:
    small = ModelConfig(latent_dim=8, fmap_base=32, fmap_max=8)
    D0, D3 = Discriminator(small, 4), Discriminator(small, 4, num_classes=K)
    x, y = torch.randn(2, 3, 4, 4), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="discriminator is unconditional"):
        d_loss_wgan_gp(D0, x, x, 1.0, real_labels=y, fake_labels=y)
    with pytest.raises(ValueError, match="conditional on 3 classes: pass the labels"):
        d_loss_wgan_gp(D3, x, x, 1.0)
    with pytest.raises(ValueError, match="conditional on 3 classes: pass the labels"):
        d_loss_wgan_gp(D3, x, x, 1.0, real_labels=y)                        # fakes' labels missing
    with pytest.raises(ValueError, match="discriminator is unconditional"):
        g_loss_wgan(D0, x, 1.0, labels=y)
    with pytest.raises(ValueError, match="conditional on 3 classes"):
        g_loss_wgan(D3, x, 1.0)


def test_conditional_networks_train_through_the_class_terms() -> None:
    torch.manual_seed(0)
    small = ModelConfig(latent_dim=8, fmap_base=32, fmap_max=8)
    G, D = Generator(small, 8, num_classes=K), Discriminator(small, 8, num_classes=K)
    y_fake, y_real = torch.tensor([0, 1, 2, 0]), torch.tensor([2, 2, 1, 0])
    fakes = G(torch.randn(4, 8), 0.5, y_fake)
    d_loss, stats = d_loss_wgan_gp(D, torch.randn(4, 3, 8, 8), fakes, 0.5, real_labels=y_real,
                                   fake_labels=y_fake)
    d_loss.backward()
    assert all(p.grad is None for p in G.parameters())                     # fakes detached
    assert D.b4.out.weight.grad[1:].abs().sum() > 0                         # the logit rows learn
    assert 0.0 <= stats["d_acc_real"] <= 1.0
    D.zero_grad()
    g_loss, _ = g_loss_wgan(D, G(torch.randn(4, 8), 0.5, y_fake), 0.5, labels=y_fake)
    g_loss.backward()
    assert G.b4.embed.weight.grad[:K].abs().sum(dim=1).min() > 0           # every class's embedding learns


def test_class_terms_stay_fp32_under_bf16_autocast() -> None:
    small = ModelConfig(latent_dim=8, fmap_base=32, fmap_max=8)
    D = Discriminator(small, 4, num_classes=K)
    x, y = torch.randn(4, 3, 4, 4), torch.tensor([0, 1, 2, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, logits = split_d_output(D(x, 1.0))
        assert logits.dtype == torch.bfloat16
        loss, _ = d_loss_wgan_gp(D, x, x.flip(0), 1.0, real_labels=y, fake_labels=y)
        ce = class_cross_entropy(logits, y)
    assert loss.dtype == torch.float32 and ce.dtype == torch.float32
