"""The GAN losses: the paper's WGAN-GP (drift term for D, -D(G(z)) for G); StyleGAN's non-saturating logistic loss
with R1. With labels, either adds the AC-GAN terms of the official code's conditional losses (D_wgangp_acgan /
G_wgan_acgan), weighted by optim.aux_weight."""
from __future__ import annotations

import functools
from typing import Callable, Mapping

import torch
import torch.nn.functional as F

from pggan.config import OptimConfig
from pggan.nn.networks import split_d_output

Critic = Callable[..., torch.Tensor]                            # D(images [N,3,R,R], alpha) -> scores [N]
                                                                # (conditional D: [N, 1 + K], see split_d_output)


# ----------------------------------------------------------------------------------------------------------------
# AC-GAN terms: any loss (WGAN-GP, logistic) adds them to its own; they take D's class logits, not D.

def critic_outputs(D: Critic, images: torch.Tensor, alpha: float, labels: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(scores [N], class logits [N, K] or None), both fp32; refuses labels for an unconditional D and a
    conditional D without labels, so that a loss never drops the class term silently."""
    scores, logits = split_d_output(D(images, alpha))
    if logits is None and labels is not None:
        raise ValueError("labels were given but the discriminator is unconditional (num_classes=0); build it "
                         "with the data set's num_classes, or pass no labels")
    if logits is not None and labels is None:
        raise ValueError(f"the discriminator is conditional on {logits.shape[1]} classes: pass the labels of the "
                         "images (class indices [N]) to the loss")
    return scores.float(), None if logits is None else logits.float()


def class_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample softmax cross-entropy of D's class logits [N, K] against class indices [N], in fp32: [N]."""
    return F.cross_entropy(logits.float(), labels, reduction="none")


def class_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose largest logit is their label (0-dim tensor; no device sync)."""
    return (logits.detach().argmax(dim=1) == labels).float().mean()


def d_aux_terms(real_logits: torch.Tensor, real_labels: torch.Tensor, fake_logits: torch.Tensor,
                fake_labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """D's AC-GAN term per sample, CE(reals, their labels) + CE(fakes, the labels G was given): [N], before the
    weight; stat tensors (0-dim, not synced): d_aux_real, d_aux_fake (mean CEs), d_acc_real, d_acc_fake (how
    often D's class head is right)."""
    ce_real = class_cross_entropy(real_logits, real_labels)     # [N]
    ce_fake = class_cross_entropy(fake_logits, fake_labels)     # [N]
    stats = {"d_aux_real": ce_real.detach().mean(), "d_aux_fake": ce_fake.detach().mean(),
             "d_acc_real": class_accuracy(real_logits, real_labels),
             "d_acc_fake": class_accuracy(fake_logits, fake_labels)}
    return ce_real + ce_fake, stats


def g_aux_terms(fake_logits: torch.Tensor, fake_labels: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """G's AC-GAN term per sample, CE(D's logits on G's fakes, the labels G was given): [N], before the weight;
    stat tensors: g_aux (mean CE), g_acc (how often D classifies the fakes as their labels)."""
    ce = class_cross_entropy(fake_logits, fake_labels)          # [N]
    return ce, {"g_aux": ce.detach().mean(), "g_acc": class_accuracy(fake_logits, fake_labels)}


def synced_stats(tensors: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """0-dim tensors -> floats with one device sync for all of them."""
    with torch.no_grad():
        values = torch.stack([t.detach().float() for t in tensors.values()]).tolist()
    return dict(zip(tensors, values))


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
        scores = split_d_output(D(x_hat, alpha))[0].float()                     # [N] (no class logits)
        (grads,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)  # [N, 3, R, R]
        norms = grads.square().sum(dim=[1, 2, 3]).sqrt()                        # [N]
        return (norms - gp_target).square() / gp_target ** 2                    # [N]


def d_loss_wgan_gp(D: Critic, reals: torch.Tensor, fakes: torch.Tensor, alpha: float,
                   gp_lambda: float = 10.0, drift: float = 0.001,
                   gp_target: float = 1.0, real_labels: torch.Tensor | None = None,
                   fake_labels: torch.Tensor | None = None,
                   aux_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """D loss: mean of D(fake) - D(real) + gp_lambda * GP + drift * D(real)^2 (fakes are detached); with labels
    (a conditional D) also + aux_weight * d_aux_terms.

    stats: d_loss, gp (mean penalty before gp_lambda), drift (mean D(real)^2 before the drift weight),
    wdist (mean D(real) - D(fake), the critic's Wasserstein estimate); conditional: d_aux_terms' stats too.
    """
    if reals.shape != fakes.shape:
        raise ValueError(f"reals {tuple(reals.shape)} and fakes {tuple(fakes.shape)} must have the same shape")
    real_scores, real_logits = critic_outputs(D, reals, alpha, real_labels)             # [N], [N, K] | None
    fake_scores, fake_logits = critic_outputs(D, fakes.detach(), alpha, fake_labels)    # [N], [N, K] | None
    gp = gradient_penalty(D, reals, fakes, alpha, gp_target)    # [N]
    drift_term = real_scores.square()                           # [N]
    per_sample = fake_scores - real_scores + gp_lambda * gp + drift * drift_term         # [N]
    loss, aux_stats = _d_loss(per_sample, real_logits, real_labels, fake_logits, fake_labels, aux_weight)
    # one device sync for all figures
    return loss, synced_stats({"d_loss": loss, "gp": gp.mean(), "drift": drift_term.mean(),
                               "wdist": (real_scores - fake_scores).mean(), **aux_stats})


def _d_loss(per_sample: torch.Tensor, real_logits: torch.Tensor | None, real_labels: torch.Tensor | None,
            fake_logits: torch.Tensor | None, fake_labels: torch.Tensor | None, aux_weight: float
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """D's loss from its per-sample loss [N], plus aux_weight * the AC-GAN term when D is conditional; the
    AC-GAN stat tensors ({} when unconditional)."""
    if real_logits is None:
        return per_sample.mean(), {}
    aux, aux_stats = d_aux_terms(real_logits, real_labels, fake_logits, fake_labels)
    return (per_sample + aux_weight * aux).mean(), aux_stats


def g_loss_wgan(D: Critic, fakes: torch.Tensor, alpha: float, labels: torch.Tensor | None = None,
                aux_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """G loss: mean of -D(fake); with labels (those G was given; a conditional D) also + aux_weight *
    g_aux_terms. stats: g_loss; conditional: g_aux_terms' stats too."""
    scores, logits = critic_outputs(D, fakes, alpha, labels)    # [N], [N, K] | None
    return _g_loss(-scores, logits, labels, aux_weight)


def _g_loss(per_sample: torch.Tensor, logits: torch.Tensor | None, labels: torch.Tensor | None,
            aux_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """G's per-sample loss [N] plus the AC-GAN term when D is conditional; stats as g_loss_wgan's."""
    if logits is None:
        loss = per_sample.mean()
        return loss, {"g_loss": loss.item()}
    aux, aux_stats = g_aux_terms(logits, labels)
    loss = (per_sample + aux_weight * aux).mean()
    return loss, synced_stats({"g_loss": loss, **aux_stats})


# ----------------------------------------------------------------------------------------------------------------
# StyleGAN's setup: the non-saturating logistic loss with an R1 penalty on the reals (Mescheder et al. 2018).

def d_loss_logistic_r1(D: Critic, reals: torch.Tensor, fakes: torch.Tensor, alpha: float,
                       r1_gamma: float = 10.0, real_labels: torch.Tensor | None = None,
                       fake_labels: torch.Tensor | None = None,
                       aux_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """D loss: mean of softplus(D(fake)) + softplus(-D(real)) + (r1_gamma / 2) * ||grad_x D(real)||^2; with
    labels (a conditional D) also + aux_weight * d_aux_terms.

    The reals' forward pass runs in fp32 (autocast off, as the gradient penalty) and serves both the loss and
    the penalty; its gradient is kept (create_graph) so the penalty trains D. Fakes are detached.
    stats: d_loss, r1 (mean squared gradient norm before r1_gamma / 2), real_score and fake_score (mean D);
    conditional: d_aux_terms' stats too.
    """
    if reals.shape != fakes.shape:
        raise ValueError(f"reals {tuple(reals.shape)} and fakes {tuple(fakes.shape)} must have the same shape")
    fake_scores, fake_logits = critic_outputs(D, fakes.detach(), alpha, fake_labels)    # [N], [N, K] | None
    with torch.autocast(device_type=reals.device.type, enabled=False):
        x = reals.detach().float().requires_grad_(r1_gamma > 0)                         # [N, 3, R, R]
        real_scores, real_logits = critic_outputs(D, x, alpha, real_labels)             # [N], [N, K] | None
        r1 = r1_penalty(real_scores, x) if r1_gamma > 0 else torch.zeros_like(real_scores)  # [N]
    per_sample = F.softplus(fake_scores) + F.softplus(-real_scores) + (r1_gamma / 2) * r1   # [N]
    loss, aux_stats = _d_loss(per_sample, real_logits, real_labels, fake_logits, fake_labels, aux_weight)
    return loss, synced_stats({"d_loss": loss, "r1": r1.mean(), "real_score": real_scores.mean(),
                               "fake_score": fake_scores.mean(), **aux_stats})


def r1_penalty(real_scores: torch.Tensor, reals: torch.Tensor) -> torch.Tensor:
    """Per-sample ||grad_x D(x)||^2 at the reals x (which must require grad and have produced real_scores [N])."""
    (grads,) = torch.autograd.grad(real_scores.sum(), reals, create_graph=True)  # [N, 3, R, R]
    return grads.square().sum(dim=[1, 2, 3])                                     # [N]


def g_loss_logistic_ns(D: Critic, fakes: torch.Tensor, alpha: float, labels: torch.Tensor | None = None,
                       aux_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """G loss (non-saturating logistic): mean of softplus(-D(fake)); with labels also + aux_weight *
    g_aux_terms. stats as g_loss_wgan's."""
    scores, logits = critic_outputs(D, fakes, alpha, labels)    # [N], [N, K] | None
    return _g_loss(F.softplus(-scores), logits, labels, aux_weight)


# ----------------------------------------------------------------------------------------------------------------
# Picking a loss by optim.loss.

# The D stats each loss returns, in the order the step averages them over ranks (conditional runs add
# AUX_STAT_NAMES).
D_STAT_NAMES = {"wgan-gp": ("d_loss", "gp", "drift", "wdist"),
                "logistic-r1": ("d_loss", "r1", "real_score", "fake_score")}
AUX_STAT_NAMES = ("d_aux_real", "d_aux_fake", "d_acc_real", "d_acc_fake")

DLoss = Callable[..., "tuple[torch.Tensor, dict[str, float]]"]  # (D, reals, fakes, alpha, real_labels=, fake_labels=)
GLoss = Callable[..., "tuple[torch.Tensor, dict[str, float]]"]  # (D, fakes, alpha, labels=)


def losses_for(optim: OptimConfig) -> tuple[DLoss, GLoss]:
    """(d_loss(D, reals, fakes, alpha, real_labels=None, fake_labels=None), g_loss(D, fakes, alpha, labels=None))
    of `optim.loss`, its weights (and the AC-GAN weight) bound from optim."""
    if optim.loss == "wgan-gp":
        d_loss = functools.partial(d_loss_wgan_gp, gp_lambda=optim.gp_lambda, drift=optim.drift,
                                   gp_target=optim.gp_target, aux_weight=optim.aux_weight)
        return d_loss, functools.partial(g_loss_wgan, aux_weight=optim.aux_weight)
    if optim.loss == "logistic-r1":
        d_loss = functools.partial(d_loss_logistic_r1, r1_gamma=optim.r1_gamma, aux_weight=optim.aux_weight)
        return d_loss, functools.partial(g_loss_logistic_ns, aux_weight=optim.aux_weight)
    raise ValueError(f"optim.loss={optim.loss!r}: expected one of {', '.join(D_STAT_NAMES)}")
