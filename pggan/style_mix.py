"""StyleGAN's style-mixing figure (paper Fig. 3): each row source takes each column source's styles on one group
of layers (coarse 4-8, middle 16-32, fine 64+)."""
from __future__ import annotations

import torch

from pggan.nn.stylegan import STYLE_GROUPS, StyleGenerator, layers_of


def style_layers(G: torch.nn.Module, group: str) -> range:
    """The layers of `group` ("coarse", "middle" or "fine") in G; a clear error for a PGGAN G or an empty group."""
    if not isinstance(G, StyleGenerator):
        raise ValueError(f"style mixing needs a StyleGAN generator (model.arch: stylegan); this one is a "
                         f"{type(G).__name__}")
    if group not in STYLE_GROUPS:
        raise ValueError(f"style group {group!r}: expected one of {', '.join(STYLE_GROUPS)}")
    layers = layers_of(G.resolution, *STYLE_GROUPS[group])
    if len(layers) == 0:
        low = STYLE_GROUPS[group][0]
        raise ValueError(f"style group {group!r} (resolutions from {low}x{low}) has no layers in a "
                         f"{G.resolution}x{G.resolution} generator; use coarse or middle")
    return layers


@torch.no_grad()
def style_mix_grid(G: StyleGenerator, z_rows: torch.Tensor, z_cols: torch.Tensor, group: str = "coarse", *,
                   psi: float = 1.0, noise_mode: str = "const", alpha: float = 1.0) -> torch.Tensor:
    """The figure as float images [(1 + rows) * (1 + cols), 3, R, R], row-major (lay out with 1 + cols columns):
    a white corner, the column sources along the top, the row sources down the left, and in cell (i, j) row
    source i with column source j's styles on `group`'s layers. Returned on the CPU."""
    layers = style_layers(G, group)
    device = next(G.parameters()).device
    w_rows, w_cols = G.mapping(z_rows.to(device)), G.mapping(z_cols.to(device))    # [rows, W], [cols, W]

    def render(ws: torch.Tensor) -> torch.Tensor:                                   # [n, L, W] -> [n, 3, R, R]
        ws = G.truncate(ws, psi) if psi != 1.0 else ws
        return G.synthesis(ws, alpha, noise_mode).float().cpu()

    corner = torch.ones(1, 3, G.resolution, G.resolution)
    rows = [torch.cat([corner, render(G.mix(w_cols, w_cols, []))])]                # [1 + cols, 3, R, R]
    for w in w_rows:
        dst = w.expand_as(w_cols)                                                   # [cols, W]
        rows.append(torch.cat([render(G.mix(w[None], w[None], [])), render(G.mix(dst, w_cols, layers))]))
    return torch.cat(rows)                                                          # [(1+rows)*(1+cols), 3, R, R]
