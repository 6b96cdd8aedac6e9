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
def generate(G: Generator, z: torch.Tensor, alpha: float = 1.0, batch: int = 64,
             labels: torch.Tensor | None = None) -> torch.Tensor:
    """G(z) in batches, on G's device, returned on the CPU as float [N, 3, R, R]. `labels`: class indices int64
    [N] for a conditional G (required there, refused by an unconditional one)."""
    device = next(G.parameters()).device

    def kw(i: int) -> dict[str, torch.Tensor]:
        return {} if labels is None else {"labels": labels[i:i + batch].to(device)}

    return torch.cat([G(z[i:i + batch].to(device), alpha, **kw(i)).float().cpu() for i in range(0, len(z), batch)])
