"""Generator/Discriminator: shapes, fade-in, growing keeps what was learnt, Table 2 parameter counts."""
from __future__ import annotations

import pytest
import torch

from pggan.config import ModelConfig, load_config
from pggan.nn.layers import downsample2x, upsample2x
from pggan.nn.networks import Discriminator, Generator

SMALL = ModelConfig(latent_dim=16, fmap_base=128, fmap_max=16, mbstd_group_size=4)   # 16 ch up to 8, then 8, 4...


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def train_a_little(net: torch.nn.Module, make_input, steps: int = 5) -> None:
    """A few Adam steps on an arbitrary objective, so that no weight is still at its initial value."""
    opt = torch.optim.Adam(net.parameters(), lr=0.05, betas=(0.0, 0.99))
    for _ in range(steps):
        out = net(make_input(), 1.0)
        loss = (out - 0.3).square().mean() + out.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def param_count(net: Generator | Discriminator) -> int:
    """Parameters of the layers in Table 2: everything but the R/2 RGB layer kept for fade-in."""
    skip = set(net.fade_in_layer_names())
    return sum(p.numel() for n, p in net.named_parameters() if n.split(".")[0] not in skip)


@pytest.mark.parametrize("res", [4, 8, 16])
@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_shapes_at_every_resolution_and_alpha(res: int, alpha: float) -> None:
    G, D = Generator(SMALL, res), Discriminator(SMALL, res)
    images = G(torch.randn(6, 16), alpha)
    assert images.shape == (6, 3, res, res)
    scores = D(images, alpha)
    assert scores.shape == (6,)
    assert torch.isfinite(scores).all()


def test_blocks_are_named_by_resolution_with_rgb_layers_for_r_and_r_over_2() -> None:
    G, D = Generator(SMALL, 16), Discriminator(SMALL, 16)
    g_heads = {k.split(".")[0] for k in G.state_dict()}
    d_heads = {k.split(".")[0] for k in D.state_dict()}
    assert g_heads == {"b4", "b8", "b16", "torgb8", "torgb16"}
    assert d_heads == {"b4", "b8", "b16", "fromrgb8", "fromrgb16"}
    assert G.resolution == D.resolution == 16


def test_generator_fade_in_is_lerp_of_upsampled_old_and_new_rgb() -> None:
    G = Generator(SMALL, 8)
    train_a_little(G, lambda: torch.randn(4, 16))
    z = torch.randn(4, 16)
    with torch.no_grad():
        x4 = G.b4(z)
        old = upsample2x(G.torgb4(x4))
        new = G.torgb8(G.b8(x4))
        assert torch.allclose(G(z, 0.0), old, atol=1e-6)
        assert torch.allclose(G(z, 1.0), new, atol=1e-6)
        assert torch.allclose(G(z, 0.25), 0.75 * old + 0.25 * new, atol=1e-5)


def test_discriminator_fade_in_is_lerp_of_downsampled_old_path_and_new_block() -> None:
    D = Discriminator(SMALL, 8)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        old = D.b4(D.fromrgb4(downsample2x(x)))
        new = D.b4(D.b8(D.fromrgb8(x)))
        assert torch.allclose(D(x, 0.0), old, atol=1e-5)
        assert torch.allclose(D(x, 1.0), new, atol=1e-5)
        h = 0.5 * D.fromrgb4(downsample2x(x)) + 0.5 * D.b8(D.fromrgb8(x))
        assert torch.allclose(D(x, 0.5), D.b4(h), atol=1e-5)


@pytest.mark.parametrize("res", [4, 8])
def test_grown_generator_at_alpha_0_reproduces_the_trained_smaller_one(res: int) -> None:
    G = Generator(SMALL, res)
    train_a_little(G, lambda: torch.randn(8, 16))
    G2 = G.grown()
    assert G2.resolution == 2 * res
    z = torch.randn(8, 16)
    with torch.no_grad():
        expected = upsample2x(G(z, 1.0))                                   # [8, 3, 2R, 2R]
        got = G2(z, 0.0)
    assert got.shape == (8, 3, 2 * res, 2 * res)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(G2(z, 1.0), expected, atol=1e-3)             # the new block does contribute


@pytest.mark.parametrize("res", [4, 8])
def test_grown_discriminator_at_alpha_0_reproduces_the_trained_smaller_one(res: int) -> None:
    D = Discriminator(SMALL, res)
    train_a_little(D, lambda: torch.randn(8, 3, res, res))
    D2 = D.grown()
    x = torch.randn(8, 3, 2 * res, 2 * res)
    with torch.no_grad():
        assert torch.allclose(D2(x, 0.0), D(downsample2x(x), 1.0), atol=1e-5)


def test_load_grown_state_dict_seeds_a_larger_network_from_a_checkpoint() -> None:
    G = Generator(SMALL, 8)
    train_a_little(G, lambda: torch.randn(4, 16))
    checkpoint = {k: v.clone() for k, v in G.state_dict().items()}
    G16 = Generator(SMALL, 16)
    report = G16.load_grown_state_dict(checkpoint)
    state = G16.state_dict()
    assert all(torch.equal(state[k], checkpoint[k]) for k in report["copied"])
    assert set(report["copied"]) == {k for k in checkpoint if not k.startswith("torgb4")}
    assert report["dropped"] == ["torgb4.weight", "torgb4.bias"]
    assert {k.split(".")[0] for k in report["fresh"]} == {"b16", "torgb16"}


def test_load_grown_state_dict_refuses_a_different_model_config() -> None:
    other = ModelConfig(latent_dim=16, fmap_base=256, fmap_max=32)
    with pytest.raises(ValueError, match=r"b4\.dense\.weight.*\(512, 16\).*\(256, 16\).*model config"):
        Generator(SMALL, 8).load_grown_state_dict(Generator(other, 8).state_dict())


def test_load_grown_state_dict_refuses_a_larger_network_and_non_network_dicts() -> None:
    with pytest.raises(ValueError, match="has no layer 'b16"):
        Discriminator(SMALL, 8).load_grown_state_dict(Discriminator(SMALL, 16).state_dict())
    with pytest.raises(ValueError, match="no b4"):
        Generator(SMALL, 8).load_grown_state_dict({})
    wrapped = {f"module.{k}": v for k, v in Generator(SMALL, 4).state_dict().items()}
    with pytest.raises(ValueError, match="DDP-wrapped"):
        Generator(SMALL, 8).load_grown_state_dict(wrapped)


def test_every_parameter_gets_a_gradient_even_at_alpha_1() -> None:
    # DDP without find_unused_parameters needs every parameter in the graph, fade-in layers included.
    G, D = Generator(SMALL, 8), Discriminator(SMALL, 8)
    D(G(torch.randn(4, 16), 1.0), 1.0).mean().backward()
    missing = [n for net in (G, D) for n, p in net.named_parameters() if p.grad is None]
    assert missing == []


def test_bad_inputs_raise_clear_errors() -> None:
    G, D = Generator(SMALL, 8), Discriminator(SMALL, 8)
    with pytest.raises(ValueError, match="alpha=1.5"):
        G(torch.randn(2, 16), 1.5)
    with pytest.raises(ValueError, match=r"expected \[N, 16\]"):
        G(torch.randn(2, 15))
    with pytest.raises(ValueError, match=r"expects \[N, 3, 8, 8\]"):
        D(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="resolution=12"):
        Generator(SMALL, 12)


def test_mbstd_group_size_1_disables_the_extra_feature_map() -> None:
    off = ModelConfig(latent_dim=16, fmap_base=128, fmap_max=16, mbstd_group_size=1)
    assert Discriminator(off, 4).b4.conv.in_channels == 16
    assert Discriminator(SMALL, 4).b4.conv.in_channels == 17


def test_paper_networks_have_table_2_parameter_counts() -> None:
    model = load_config("celeba-hq-1024.yaml").model
    G, D = Generator(model, 1024), Discriminator(model, 1024)              # built, never run, at 1024
    assert 23.05e6 <= param_count(G) <= 23.15e6
    assert 23.05e6 <= param_count(D) <= 23.15e6
    g, d = dict(G.named_parameters()), dict(D.named_parameters())
    layer = lambda params, name: sum(p.numel() for k, p in params.items() if k.startswith(name + "."))  # noqa: E731
    assert layer(g, "b4.dense") == 512 * 512 * 16 + 512                    # "Conv 4x4": 4.2M
    assert layer(g, "b8.conv0") == 512 * 512 * 9 + 512                     # "Conv 3x3" at 512 ch: 2.4M
    assert layer(g, "torgb1024") == 16 * 3 + 3                             # final toRGB: 51
    assert layer(d, "fromrgb1024") == 3 * 16 + 16                          # "Conv 1x1": 64
    assert layer(d, "b4.conv") == 513 * 512 * 9 + 512                      # after minibatch stddev: 513 in
    assert layer(d, "b4.out") == 513                                       # "Fully-connected": 513
