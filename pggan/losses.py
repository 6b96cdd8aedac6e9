"""The paper's losses: WGAN-GP with the drift term for D, -D(G(z)) for G."""
from __future__ import annotations

from typing import Callable

import torch

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
