"""The GAN losses: the paper's WGAN-GP (drift term for D, -D(G(z)) for G); StyleGAN's logistic loss with R1."""
from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F

from pggan.config import OptimConfig

Critic = Callable[..., torch.Tensor]                            # D(images [N,3,R,R], alpha) -> scores [N]


def gradient_penalty(D: Critic, reals: torch.Tensor, fakes: torch.Tensor, alpha: float,
                     gp_target: float = 1.0) -> torch.Tensor:
    """Per-sample (||grad_x D(x_hat)|| - target)^2 / target^2 at x_hat = lerp(real, fake, u), in fp32.

    Autocast is switched off here: bf16 gradients of D would make the norm (and so the penalty) noisy.
    The graph is kept (create_graph) so the penalty trains D.
    """
    device_type = reals.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        reals32, fakes32 = reals.detach().float(), fakes.detach().float()
        u = torch.rand(reals32.shape[0], 1, 1, 1, device=reals.device)          # [N, 1, 1, 1]
        x_hat = torch.lerp(reals32, fakes32, u).requires_grad_(True)            # [N, 3, R, R]
        scores = D(x_hat, alpha).float()                                        # [N]
        (grads,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)  # [N, 3, R, R]
        norms = grads.square().sum(dim=[1, 2, 3]).sqrt()                        # [N]
        return (norms - gp_target).square() / gp_target ** 2                    # [N]


def d_loss_wgan_gp(D: Critic, reals: torch.Tensor, fakes: torch.Tensor, alpha: float,
                   gp_lambda: float = 10.0, drift: float = 0.001,
                   gp_target: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """D loss: mean of D(fake) - D(real) + gp_lambda * GP + drift * D(real)^2 (fakes are detached).

    stats: d_loss, gp (mean penalty before gp_lambda), drift (mean D(real)^2 before the drift weight),
    wdist (mean D(real) - D(fake), the critic's Wasserstein estimate).
    """
    if reals.shape != fakes.shape:
        raise ValueError(f"reals {tuple(reals.shape)} and fakes {tuple(fakes.shape)} must have the same shape")
    real_scores = D(reals, alpha).float()                       # [N]
    fake_scores = D(fakes.detach(), alpha).float()              # [N]
    gp = gradient_penalty(D, reals, fakes, alpha, gp_target)    # [N]
    drift_term = real_scores.square()                           # [N]
    loss = (fake_scores - real_scores + gp_lambda * gp + drift * drift_term).mean()
    with torch.no_grad():  # one device sync for all four figures
        values = torch.stack([loss, gp.mean(), drift_term.mean(), (real_scores - fake_scores).mean()]).tolist()
    return loss, dict(zip(("d_loss", "gp", "drift", "wdist"), values))


def g_loss_wgan(D: Critic, fakes: torch.Tensor, alpha: float) -> tuple[torch.Tensor, dict[str, float]]:
    """G loss: mean of -D(fake). stats: g_loss."""
    loss = -D(fakes, alpha).float().mean()
    return loss, {"g_loss": loss.item()}


# ----------------------------------------------------------------------------------------------------------------
# StyleGAN's setup: the non-saturating logistic loss with an R1 penalty on the reals (Mescheder et al. 2018).

def d_loss_logistic_r1(D: Critic, reals: torch.Tensor, fakes: torch.Tensor, alpha: float,
                       r1_gamma: float = 10.0) -> tuple[torch.Tensor, dict[str, float]]:
    """D loss: mean of softplus(D(fake)) + softplus(-D(real)) + (r1_gamma / 2) * ||grad_x D(real)||^2.

    The reals' forward pass runs in fp32 (autocast off, as the gradient penalty) and serves both the loss and
    the penalty; its gradient is kept (create_graph) so the penalty trains D. Fakes are detached.
    stats: d_loss, r1 (mean squared gradient norm before r1_gamma / 2), real_score and fake_score (mean D).
    """
    if reals.shape != fakes.shape:
        raise ValueError(f"reals {tuple(reals.shape)} and fakes {tuple(fakes.shape)} must have the same shape")
    fake_scores = D(fakes.detach(), alpha).float()              # [N]
    with torch.autocast(device_type=reals.device.type, enabled=False):
        x = reals.detach().float().requires_grad_(r1_gamma > 0)                 # [N, 3, R, R]
        real_scores = D(x, alpha).float()                                       # [N]
        r1 = r1_penalty(real_scores, x) if r1_gamma > 0 else torch.zeros_like(real_scores)  # [N]
    loss = (F.softplus(fake_scores) + F.softplus(-real_scores) + (r1_gamma / 2) * r1).mean()
    with torch.no_grad():  # one device sync for all four figures
        values = torch.stack([loss, r1.mean(), real_scores.mean(), fake_scores.mean()]).tolist()
    return loss, dict(zip(("d_loss", "r1", "real_score", "fake_score"), values))


def r1_penalty(real_scores: torch.Tensor, reals: torch.Tensor) -> torch.Tensor:
    """Per-sample ||grad_x D(x)||^2 at the reals x (which must require grad and have produced real_scores [N])."""
    (grads,) = torch.autograd.grad(real_scores.sum(), reals, create_graph=True)  # [N, 3, R, R]
    return grads.square().sum(dim=[1, 2, 3])                                     # [N]


def g_loss_logistic_ns(D: Critic, fakes: torch.Tensor, alpha: float) -> tuple[torch.Tensor, dict[str, float]]:
    """G loss (non-saturating logistic): mean of softplus(-D(fake)). stats: g_loss."""
    loss = F.softplus(-D(fakes, alpha).float()).mean()
    return loss, {"g_loss": loss.item()}


# ----------------------------------------------------------------------------------------------------------------
# Picking a loss by optim.loss.

# The D stats each loss returns, in the order the step averages them over ranks.
D_STAT_NAMES = {"wgan-gp": ("d_loss", "gp", "drift", "wdist"),
                "logistic-r1": ("d_loss", "r1", "real_score", "fake_score")}

DLoss = Callable[[Critic, torch.Tensor, torch.Tensor, float], "tuple[torch.Tensor, dict[str, float]]"]
GLoss = Callable[[Critic, torch.Tensor, float], "tuple[torch.Tensor, dict[str, float]]"]


def losses_for(optim: OptimConfig) -> tuple[DLoss, GLoss]:
    """(d_loss(D, reals, fakes, alpha), g_loss(D, fakes, alpha)) of `optim.loss`, its weights bound from optim."""
    if optim.loss == "wgan-gp":
        return (functools.partial(d_loss_wgan_gp, gp_lambda=optim.gp_lambda, drift=optim.drift,
                                  gp_target=optim.gp_target), g_loss_wgan)
    if optim.loss == "logistic-r1":
        return functools.partial(d_loss_logistic_r1, r1_gamma=optim.r1_gamma), g_loss_logistic_ns
    raise ValueError(f"optim.loss={optim.loss!r}: expected one of {', '.join(D_STAT_NAMES)}")
