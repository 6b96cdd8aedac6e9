"""The pure training step of one stage (paper sec. 3): the fade-in of the reals, one D update, one G update, the
gradients averaged over ranks, then the EMA of G. No Ray, no I/O. The loss is `optim.loss` (the paper's WGAN-GP, or
StyleGAN's logistic loss with R1; pggan.losses.losses_for); with labels (a conditional G and D) both updates add
the AC-GAN terms, fakes drawn with labels from the data set's label distribution.

Building the stage's networks: pggan.stage_nets; the all-reduce: pggan.distributed; the minibatches:
pggan.batches; images from G: pggan.sampling.
"""
from __future__ import annotations

import contextlib

import torch

from pggan.config import PipelineConfig
from pggan.distributed import NonFiniteLossError, average_buffer, average_gradients
from pggan.labels import sample_labels
from pggan.losses import AUX_STAT_NAMES, D_STAT_NAMES, losses_for
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
               cfg: PipelineConfig, real_labels: torch.Tensor | None = None,
               label_probs: torch.Tensor | None = None) -> dict[str, float]:
    """One D update then one G update on this rank's share of the global minibatch, then the EMA.

    reals: float [n, 3, R, R] in [-1, 1]; with a conditional G/D, real_labels int64 [n] and label_probs [K] (the
    data set's class frequencies, from which the fakes' labels are drawn). Returns the losses averaged over all
    ranks (the D stats of optim.loss, the AC-GAN stats when conditional, g_loss). Raises NonFiniteLossError (on
    every rank) when a loss or gradient is NaN/Inf.
    """
    o, n = cfg.optim, reals.shape[0]
    conditional = G.num_classes > 0
    if conditional and (real_labels is None or label_probs is None):
        raise ValueError(f"G is conditional on {G.num_classes} classes: pass real_labels [n] and label_probs [K]")
    d_loss_fn, g_loss_fn = losses_for(o)
    d_names = D_STAT_NAMES[o.loss] + (AUX_STAT_NAMES if conditional else ())
    reals = blend_reals(reals, alpha)                            # [n, 3, R, R]
    amp = autocast_for(reals.device, cfg)

    def fake_labels() -> torch.Tensor | None:                    # int64 [n] or None
        return sample_labels(label_probs, n, device=reals.device) if conditional else None

    # D: fakes carry no graph into G.
    y_fake = fake_labels()
    with torch.no_grad(), amp:
        fakes = G(torch.randn(n, G.model.latent_dim, device=reals.device), alpha,
                  **_label_kw(y_fake)).float()                  # [n, 3, R, R]
    with amp:
        d_loss, d_stats = d_loss_fn(D, reals, fakes, alpha, **({"real_labels": real_labels, "fake_labels": y_fake}
                                                               if conditional else {}))
    opt_D.zero_grad(set_to_none=True)
    d_loss.backward()
    d_avg = average_gradients(D, torch.tensor([d_stats[k] for k in d_names]))
    opt_D.step()

    # G: D's weights are held fixed so no gradient is spent on them.
    y_fake = fake_labels()
    D.requires_grad_(False)
    try:
        with amp:
            fakes = G(torch.randn(n, G.model.latent_dim, device=reals.device), alpha,
                      **_label_kw(y_fake))                      # [n, 3, R, R]
            g_loss, _ = g_loss_fn(D, fakes, alpha, **({"labels": y_fake} if conditional else {}))
        opt_G.zero_grad(set_to_none=True)
        g_loss.backward()
    finally:
        D.requires_grad_(True)
    g_avg = average_gradients(G, g_loss.detach().reshape(1))
    opt_G.step()
    average_buffer(G, "w_avg")                                   # StyleGAN's tracked mean w: one value on all ranks

    ema_update(G_ema, G, o.ema_beta)
    return dict(zip(d_names, d_avg.tolist())) | {"g_loss": float(g_avg[0])}


def _label_kw(labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """G's keyword for labels: none for an unconditional G (StyleGAN's forward takes no labels)."""
    return {} if labels is None else {"labels": labels}
