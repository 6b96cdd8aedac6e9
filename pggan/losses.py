"""The paper's losses: WGAN-GP with the drift term for D, -D(G(z)) for G; with labels, the AC-GAN terms of the
official code's conditional losses (D_wgangp_acgan / G_wgan_acgan), weighted by optim.aux_weight."""
from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F

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
    aux_stats: dict[str, torch.Tensor] = {}
    if real_logits is not None:
        aux, aux_stats = d_aux_terms(real_logits, real_labels, fake_logits, fake_labels)
        per_sample = per_sample + aux_weight * aux
    loss = per_sample.mean()
    # one device sync for all figures
    return loss, synced_stats({"d_loss": loss, "gp": gp.mean(), "drift": drift_term.mean(),
                               "wdist": (real_scores - fake_scores).mean(), **aux_stats})


def g_loss_wgan(D: Critic, fakes: torch.Tensor, alpha: float, labels: torch.Tensor | None = None,
                aux_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """G loss: mean of -D(fake); with labels (those G was given; a conditional D) also + aux_weight *
    g_aux_terms. stats: g_loss; conditional: g_aux_terms' stats too."""
    scores, logits = critic_outputs(D, fakes, alpha, labels)    # [N], [N, K] | None
    if logits is None:
        loss = -scores.mean()
        return loss, {"g_loss": loss.item()}
    aux, aux_stats = g_aux_terms(logits, labels)
    loss = (aux_weight * aux - scores).mean()
    return loss, synced_stats({"g_loss": loss, **aux_stats})
