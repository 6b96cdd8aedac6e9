"""Images from a generator: fixed latents from a seed and G(z) in batches (shared by training's sample grids,
the evaluation and `pggan generate`)."""
from __future__ import annotations

import torch

from pggan.nn import Generator


def sample_latents(n: int, latent_dim: int, seed: int) -> torch.Tensor:
    """Fixed latents [n, latent_dim] from a seed (the same vectors at every stage, for comparable grids)."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(n, latent_dim, generator=gen)


@torch.no_grad()
def generate(G: Generator, z: torch.Tensor, alpha: float = 1.0, batch: int = 64) -> torch.Tensor:
    """G(z) in batches, on G's device, returned on the CPU as float [N, 3, R, R]."""
    device = next(G.parameters()).device
    return torch.cat([G(z[i:i + batch].to(device), alpha).float().cpu() for i in range(0, len(z), batch)])
