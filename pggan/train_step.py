"""The pure training step of one stage (paper sec. 3, WGAN-GP as in Gulrajani et al.): the fade-in of the reals,
one D update, one G update, the gradients averaged over ranks, then the EMA of G. No Ray, no I/O.

Building the stage's networks: pggan.stage_nets; the all-reduce: pggan.distributed; the minibatches:
pggan.batches; images from G: pggan.sampling.
"""
from __future__ import annotations

import contextlib

import torch

from pggan.config import PipelineConfig
from pggan.distributed import NonFiniteLossError, average_gradients
from pggan.losses import d_loss_wgan_gp, g_loss_wgan
from pggan.nn import Discriminator, Generator, downsample2x, upsample2x

__all__ = ["NonFiniteLossError", "autocast_for", "blend_reals", "ema_update", "train_step"]


def blend_reals(reals: torch.Tensor, alpha: float) -> torch.Tensor:
    """Fade-in of the real images, as the paper: lerp(upsample(avgpool2x2(x)), x, alpha) ([N,3,R,R] kept)."""
    if alpha >= 1.0 or reals.shape[-1] <= 4:
        return reals
    low = upsample2x(downsample2x(reals))                        # [N, 3, R, R] at half the detail
    return torch.lerp(low, reals, float(alpha))


@torch.no_grad()
def ema_update(G_ema: torch.nn.Module, G: torch.nn.Module, beta: float) -> None:
    """G_ema <- beta * G_ema + (1 - beta) * G, parameter by parameter (buffers copied)."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - beta)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def autocast_for(device: torch.device, cfg: PipelineConfig) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when scaling.mixed_precision is bf16; fp32 elsewhere (the GP is always fp32)."""
    enabled = device.type == "cuda" and cfg.scaling.mixed_precision == "bf16"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def train_step(G: Generator, D: Discriminator, G_ema: Generator, opt_G: torch.optim.Optimizer,
               opt_D: torch.optim.Optimizer, reals: torch.Tensor, alpha: float,
               cfg: PipelineConfig) -> dict[str, float]:
    """One D update then one G update on this rank's share of the global minibatch, then the EMA.

    reals: float [n, 3, R, R] in [-1, 1]. Returns the losses averaged over all ranks. Raises
    NonFiniteLossError (on every rank) when a loss or gradient is NaN/Inf.
    """
    o, n = cfg.optim, reals.shape[0]
    reals = blend_reals(reals, alpha)                            # [n, 3, R, R]
    amp = autocast_for(reals.device, cfg)

    # D: WGAN-GP with drift; fakes carry no graph into G.
    with torch.no_grad(), amp:
        fakes = G(torch.randn(n, G.model.latent_dim, device=reals.device), alpha).float()   # [n, 3, R, R]
    with amp:
        d_loss, d_stats = d_loss_wgan_gp(D, reals, fakes, alpha, o.gp_lambda, o.drift, o.gp_target)
    opt_D.zero_grad(set_to_none=True)
    d_loss.backward()
    d_avg = average_gradients(D, torch.tensor([d_stats[k] for k in ("d_loss", "gp", "drift", "wdist")]))
    opt_D.step()

    # G: -D(G(z)); D's weights are held fixed so no gradient is spent on them.
    D.requires_grad_(False)
    try:
        with amp:
            fakes = G(torch.randn(n, G.model.latent_dim, device=reals.device), alpha)        # [n, 3, R, R]
            g_loss, _ = g_loss_wgan(D, fakes, alpha)
        opt_G.zero_grad(set_to_none=True)
        g_loss.backward()
    finally:
        D.requires_grad_(True)
    g_avg = average_gradients(G, g_loss.detach().reshape(1))
    opt_G.step()

    ema_update(G_ema, G, o.ema_beta)
    d = d_avg.tolist()
    return {"d_loss": d[0], "gp": d[1], "drift": d[2], "wdist": d[3], "g_loss": float(g_avg[0])}
