"""Images from a generator: fixed latents from a seed and G(z) in batches (shared by training's sample grids,
the evaluation and `pggan generate`)."""
from __future__ import annotations

import contextlib
from typing import Any

import torch

from pggan.nn import Generator
from pggan.nn.factory import is_style_generator


def sample_latents(n: int, latent_dim: int, seed: int) -> torch.Tensor:
    """Fixed latents [n, latent_dim] from a seed (the same vectors at every stage, for comparable grids)."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(n, latent_dim, generator=gen)


def style_options(G: torch.nn.Module, psi: float = 1.0, noise_mode: str | None = None) -> dict[str, Any]:
    """G's keyword arguments for StyleGAN's generation options (truncation psi, noise const|random); none for the
    defaults. A PGGAN G has neither: asking for one raises ValueError naming the option."""
    if is_style_generator(G):
        return {**({"psi": float(psi)} if psi != 1.0 else {}), **({"noise_mode": noise_mode} if noise_mode else {})}
    if psi != 1.0:
        raise ValueError(f"truncation psi={psi:g} needs a StyleGAN generator (model.arch: stylegan); this one is a "
                         f"{type(G).__name__}: leave psi at 1")
    if noise_mode:
        raise ValueError(f"noise mode {noise_mode!r} needs a StyleGAN generator (model.arch: stylegan); this one is "
                         f"a {type(G).__name__}, which has no noise inputs")
    return {}


def seeded_noise(G: torch.nn.Module, seed: int | None) -> contextlib.AbstractContextManager:
    """Within it, a StyleGAN G's random noise is drawn from `seed` (the same seed, the same images) and the global
    torch RNG is left as it was; a no-op for a PGGAN G or seed None."""
    if seed is None or not is_style_generator(G):
        return contextlib.nullcontext()
    device = next(G.parameters()).device
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=[device] if device.type == "cuda" else []))
    torch.manual_seed(int(seed))
    return stack


@torch.no_grad()
def generate(G: Generator, z: torch.Tensor, alpha: float = 1.0, batch: int = 64, *, psi: float = 1.0,
             noise_mode: str | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
    """G(z) in batches, on G's device, returned on the CPU as float [N, 3, R, R]. psi (truncation) and noise_mode
    (const | random; None = G's own) only for a StyleGAN G (pggan.sampling.style_options). `labels`: class
    indices int64 [N] for a conditional G (required there, refused by an unconditional one)."""
    device = next(G.parameters()).device
    style = style_options(G, psi, noise_mode)

    def kw(i: int) -> dict[str, Any]:
        return style if labels is None else {**style, "labels": labels[i:i + batch].to(device)}

    return torch.cat([G(z[i:i + batch].to(device), alpha, **kw(i)).float().cpu() for i in range(0, len(z), batch)])
