"""The style-mixing figure: row sources with column sources' coarse/middle/fine styles, in a labelled grid."""
from __future__ import annotations

import pytest
import torch

from pggan.config import ModelConfig
from pggan.nn.factory import make_generator
from pggan.nn.style_layers import NoiseInjection
from pggan.style_mix import style_layers, style_mix_grid

MODEL = ModelConfig(latent_dim=16, fmap_base=128, fmap_max=16, arch="stylegan", mapping_layers=2)


@pytest.fixture
def G() -> torch.nn.Module:
    torch.manual_seed(0)
    G = make_generator(MODEL, 16).eval()
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.5)
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.1)                   # styles that visibly differ
    return G


def test_grid_cells_are_row_sources_with_the_column_sources_styles_on_the_group(G) -> None:
    z_rows, z_cols = torch.randn(2, 16), torch.randn(3, 16)
    grid = style_mix_grid(G, z_rows, z_cols, "coarse").reshape(3, 4, 3, 16, 16)  # [1+rows, 1+cols, 3, R, R]
    assert torch.equal(grid[0, 0], torch.ones(3, 16, 16))       # blank corner
    with torch.no_grad():
        w_r, w_c = G.mapping(z_rows), G.mapping(z_cols)
        torch.testing.assert_close(grid[0, 1:], G(z_cols, noise_mode="const"))
        torch.testing.assert_close(grid[1:, 0], G(z_rows, noise_mode="const"))
        cell = G.synthesis(G.mix(w_r[1:2], w_c[2:3], [0, 1, 2, 3]), noise_mode="const")
    torch.testing.assert_close(grid[2, 3], cell[0])
    assert not torch.allclose(grid[2, 3], grid[2, 0]) and not torch.allclose(grid[2, 3], grid[0, 3])


def test_groups_and_errors(G) -> None:
    assert list(style_layers(G, "coarse")) == [0, 1, 2, 3] and list(style_layers(G, "middle")) == [4, 5]
    with pytest.raises(ValueError, match="'fine' .* no layers in a 16x16 generator"):
        style_layers(G, "fine")
    with pytest.raises(ValueError, match="style group 'all'"):
        style_layers(G, "all")
    pggan_G = make_generator(ModelConfig(latent_dim=16, fmap_base=128, fmap_max=16), 8)
    with pytest.raises(ValueError, match="needs a StyleGAN generator"):
        style_mix_grid(pggan_G, torch.randn(1, 16), torch.randn(1, 16))
