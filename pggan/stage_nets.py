"""What one stage trains, built or grown: G, D, the EMA generator G_ema and their Adam optimizers (paper sec. 3)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from pggan.config import ModelConfig, OptimConfig
from pggan.nn import Discriminator, Generator, make_discriminator, make_generator


@dataclass
class StageNets:
    """Everything a stage trains: the networks, the EMA generator and the two optimizers."""
    G: Generator
    D: Discriminator
    G_ema: Generator
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer


def make_optimizers(G: torch.nn.Module, D: torch.nn.Module, lr: float,
                    optim: OptimConfig) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Fresh Adam optimizers (the paper resets them at every resolution)."""
    betas = (float(optim.beta1), float(optim.beta2))          # ints raise in this torch
    return (torch.optim.Adam(G.parameters(), lr=lr, betas=betas, eps=optim.eps),
            torch.optim.Adam(D.parameters(), lr=lr, betas=betas, eps=optim.eps))


def build_stage(model: ModelConfig, optim: OptimConfig, res: int, lr: float, device: torch.device | str,
                init_seed: int, previous: Mapping[str, Any] | None = None, num_classes: int = 0) -> StageNets:
    """Networks of `model.arch` at `res` (conditional on num_classes classes if > 0), fresh from `init_seed` or
    grown from a smaller stage's state (its G, D, G_ema).

    Growing keeps every trained layer. G_ema grows from the previous G_ema; its new layers start as copies of
    G's new layers (as the official Gs = G.clone()), so the EMA tracks G from the same starting point.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)                             # identical init on every rank
        G, D = make_generator(model, res, num_classes), make_discriminator(model, res, num_classes)
    G_ema = make_generator(model, res, num_classes)
    G_ema.load_state_dict(G.state_dict())
    if previous is not None:
        G.load_grown_state_dict(previous["G"])
        D.load_grown_state_dict(previous["D"])
        fresh = G_ema.load_grown_state_dict(previous["G_ema"])["fresh"]
        own, g_state = G_ema.state_dict(), G.state_dict()
        with torch.no_grad():
            for key in fresh:
                own[key].copy_(g_state[key])
    G, D, G_ema = G.to(device), D.to(device), G_ema.to(device).eval().requires_grad_(False)
    opt_G, opt_D = make_optimizers(G, D, lr, optim)
    return StageNets(G, D, G_ema, opt_G, opt_D)


def load_stage_state(nets: StageNets, state: Mapping[str, Any]) -> None:
    """Restore a same-resolution checkpoint exactly: weights, EMA and both optimizers' moments."""
    nets.G.load_state_dict(state["G"])
    nets.D.load_state_dict(state["D"])
    nets.G_ema.load_state_dict(state["G_ema"])
    nets.opt_G.load_state_dict(state["opt_G"])
    nets.opt_D.load_state_dict(state["opt_D"])
