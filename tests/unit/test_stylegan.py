"""StyleGenerator: the Generator's interface, growing and fade-in, style mixing, truncation, tracked mean w."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from pggan.config import ModelConfig
from pggan.nn.factory import make_discriminator, make_generator
from pggan.nn.layers import upsample2x
from pggan.nn.networks import Discriminator
from pggan.nn.style_layers import NoiseInjection, StyleEpilogue
from pggan.nn.stylegan import STYLE_GROUPS, StyleDiscriminator, StyleGenerator, layers_of, num_style_layers
from pggan.nn.summary import model_summaries

SMALL = ModelConfig(latent_dim=16, fmap_base=128, fmap_max=16, arch="stylegan", mapping_layers=3)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def switch_on_noise(G: StyleGenerator) -> None:
    """Noise scales start at 0; give them a value so that the noise shows in the images."""
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.5)


def train_a_little(G: StyleGenerator, steps: int = 3) -> None:
    opt = torch.optim.Adam(G.parameters(), lr=0.05, betas=(0.0, 0.99))
    for _ in range(steps):
        out = G(torch.randn(4, G.model.latent_dim), 1.0)
        loss = (out - 0.3).square().mean() + out.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("res", [4, 8, 16])
@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_shapes_at_every_resolution_and_alpha(res: int, alpha: float) -> None:
    G, D = make_generator(SMALL, res), make_discriminator(SMALL, res)
    assert isinstance(G, StyleGenerator) and isinstance(D, StyleDiscriminator)
    images = G(torch.randn(6, 16), alpha)
    assert images.shape == (6, 3, res, res)
    assert D(images, alpha).shape == (6,)
    assert G.num_layers == 2 * (res.bit_length() - 1) - 2      # two style layers per resolution


def test_same_interface_as_the_pggan_generator() -> None:
    G = make_generator(SMALL, 16)
    assert G.resolution == 16 and G.model.latent_dim == 16
    heads = {k.split(".")[0] for k in G.state_dict()}
    assert heads == {"mapping", "w_avg", "b4", "b8", "b16", "torgb8", "torgb16"}
    assert G.fade_in_layer_names() == ["torgb8"]
    with pytest.raises(ValueError, match=r"expected \[N, 16\]"):
        G(torch.randn(2, 15))
    with pytest.raises(ValueError, match="alpha=1.5"):
        G(torch.randn(2, 16), 1.5)


def test_grown_generator_at_alpha_0_is_the_upsampled_small_one_and_keeps_every_trained_weight() -> None:
    G4 = make_generator(SMALL, 4)
    switch_on_noise(G4)
    train_a_little(G4)
    assert G4.w_avg.abs().sum() > 0                             # tracked while training
    G8 = G4.grown()
    assert type(G8) is StyleGenerator and G8.resolution == 8
    old, new = G4.state_dict(), G8.state_dict()
    for key, value in old.items():
        torch.testing.assert_close(new[key], value, msg=key)   # includes w_avg and the const noise images
    G4.eval(), G8.eval()
    z = torch.randn(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(G8(z, 0.0, noise_mode="const"), upsample2x(G4(z, noise_mode="const")))
        low, full, mid = (G8(z, a, noise_mode="const") for a in (0.0, 1.0, 0.3))
    torch.testing.assert_close(mid, torch.lerp(low, full, 0.3))
    assert not torch.allclose(low, full)


def test_grown_discriminator_keeps_the_blur_and_a_pggan_state_dict() -> None:
    D8 = make_discriminator(SMALL, 8)
    D16 = D8.grown()
    assert type(D16) is StyleDiscriminator
    pggan_D = Discriminator(dataclasses.replace(SMALL, arch="pggan"), 16)
    assert set(D16.state_dict()) == set(pggan_D.state_dict())  # the blur adds no weights
    pggan_D.load_state_dict(D16.state_dict())
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(D16(x), pggan_D(x))           # same weights, blurred down-sampling


def capture_ws(G: StyleGenerator) -> list[torch.Tensor]:
    """Replace G.synthesis by a recorder of the per-layer w it is given."""
    seen: list[torch.Tensor] = []

    def record(ws: torch.Tensor, alpha: float = 1.0, noise_mode: str | None = None) -> torch.Tensor:
        seen.append(ws.detach().clone())
        return torch.zeros(ws.shape[0], 3, G.resolution, G.resolution)

    G.synthesis = record                                        # type: ignore[method-assign]
    return seen


def test_training_mixes_two_ws_at_a_random_crossover_among_the_layers_in_use() -> None:
    G = make_generator(dataclasses.replace(SMALL, style_mixing_prob=1.0), 16).train()
    seen = capture_ws(G)
    crossovers = set()
    for _ in range(60):
        z = torch.randn(5, 16)
        G(z, 1.0)
        ws, w = seen[-1], G.mapping(z).detach()
        same = (ws == w.unsqueeze(1)).all(dim=2).all(dim=0)     # [L]: layers that kept z's own w
        k = int(same.int().argmin())
        assert 1 <= k < G.num_layers and same[:k].all() and not same[k:].any()
        assert (ws[:, k:] == ws[:, -1:]).all()                  # one second w for every layer past the crossover
        crossovers.add(k)
    assert crossovers == set(range(1, G.num_layers))            # every crossover 1..L-1 is drawn


def test_mixing_probability_and_eval_mode() -> None:
    G = make_generator(SMALL, 8).train()                        # style_mixing_prob 0.9 (the paper's)
    seen = capture_ws(G)
    for _ in range(400):
        G(torch.randn(2, 16))
    mixed = sum(not (ws == ws[:, :1]).all() for ws in seen)
    assert 0.85 * 400 <= mixed <= 0.95 * 400
    G.eval()
    seen.clear()
    for _ in range(20):
        G(torch.randn(2, 16))
    assert all((ws == ws[:, :1]).all() for ws in seen)          # no mixing at generation


def test_style_mixing_changes_only_the_layers_past_the_crossover() -> None:
    G = make_generator(SMALL, 16).eval()
    switch_on_noise(G)
    outputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach().clone()))
             for m in G.modules() if isinstance(m, StyleEpilogue)]          # one per style layer, in order
    w_a, w_b = G.mapping(torch.randn(3, 16)), G.mapping(torch.randn(3, 16))
    crossover = 3
    with torch.no_grad():
        plain = G.synthesis(G.mix(w_a, w_a, []), noise_mode="const")
        per_layer_a = outputs[:]
        outputs.clear()
        mixed = G.synthesis(G.mix(w_a, w_b, range(crossover, G.num_layers)), noise_mode="const")
    for h in hooks:
        h.remove()
    assert len(per_layer_a) == len(outputs) == G.num_layers
    for i, (a, m) in enumerate(zip(per_layer_a, outputs)):
        assert torch.equal(a, m) == (i < crossover), f"layer {i}"
    assert not torch.allclose(plain, mixed)


def test_style_groups_name_the_papers_coarse_middle_fine_layers() -> None:
    assert num_style_layers(1024) == 18
    assert list(layers_of(1024, *STYLE_GROUPS["coarse"])) == [0, 1, 2, 3]
    assert list(layers_of(1024, *STYLE_GROUPS["middle"])) == [4, 5, 6, 7]
    assert list(layers_of(1024, *STYLE_GROUPS["fine"])) == list(range(8, 18))
    assert list(layers_of(16, *STYLE_GROUPS["fine"])) == []    # a 16x16 generator has no fine layers


@pytest.mark.parametrize("cutoff", [None, 0])
def test_psi_0_gives_the_mean_w_image_for_every_z(cutoff: int | None) -> None:
    G = make_generator(SMALL, 16)                               # default cutoff 8 covers all 6 layers at 16x16
    switch_on_noise(G)
    train_a_little(G)
    G.eval()
    with torch.no_grad():
        images = G(torch.randn(5, 16), psi=0.0, cutoff=cutoff, noise_mode="const")
        mean_image = G.synthesis(G.w_avg.expand(1, G.num_layers, -1), noise_mode="const")
        untruncated = G(torch.randn(5, 16), noise_mode="const")
    for img in images:
        torch.testing.assert_close(img, mean_image[0])
    assert not torch.allclose(untruncated[0], untruncated[1])   # psi = 1 (default) keeps the variety


def test_truncation_pulls_w_toward_the_mean_only_below_the_cutoff() -> None:
    G = make_generator(SMALL, 16)
    with torch.no_grad():
        G.w_avg.normal_()
    ws = torch.randn(4, G.num_layers, 16)
    out = G.truncate(ws, psi=0.7, cutoff=2)
    torch.testing.assert_close(out[:, :2], G.w_avg + 0.7 * (ws[:, :2] - G.w_avg))
    torch.testing.assert_close(out[:, 2:], ws[:, 2:])


def test_mean_w_is_tracked_with_beta_only_in_training() -> None:
    G = make_generator(dataclasses.replace(SMALL, w_avg_beta=0.9), 8)
    with torch.no_grad():
        G.w_avg.fill_(1.0)
    z = torch.randn(8, 16)
    G.eval()
    G(z)
    assert torch.equal(G.w_avg, torch.ones(16))
    G.train()
    G(z)
    torch.testing.assert_close(G.w_avg, 0.9 * torch.ones(16) + 0.1 * G.mapping(z).detach().mean(dim=0))


def test_const_noise_is_reproducible_and_random_noise_is_not() -> None:
    G = make_generator(SMALL, 8).eval()
    switch_on_noise(G)
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(G(z, noise_mode="const"), G(z, noise_mode="const"))
        assert not torch.allclose(G(z), G(z))                    # default noise_mode "random"
        G.noise_mode = "const"
        assert torch.equal(G(z), G(z, noise_mode="const"))


def test_state_dict_round_trip_gives_the_same_images() -> None:
    G = make_generator(SMALL, 8)
    switch_on_noise(G)
    train_a_little(G)
    copy = StyleGenerator(SMALL, 8)
    copy.load_state_dict(G.state_dict())
    z = torch.randn(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(copy.eval()(z, psi=0.5, noise_mode="const"), G.eval()(z, psi=0.5,
                                                                                         noise_mode="const"))


def test_bad_arch_is_named() -> None:
    with pytest.raises(ValueError, match="model.arch='stylegan3'"):
        make_generator(dataclasses.replace(SMALL, arch="stylegan3"), 8)


def test_every_generator_parameter_learns_and_a_few_steps_reduce_a_simple_loss() -> None:
    """Smoke: Adam on CPU fits G (training mode: mixing, random noise) to a target colour."""
    G = make_generator(SMALL, 8).train()
    target = torch.tensor([0.5, -0.5, 0.25]).reshape(1, 3, 1, 1)
    opt = torch.optim.Adam(G.parameters(), lr=0.01, betas=(0.0, 0.99))
    losses = []
    for step in range(30):
        loss = (G(torch.randn(8, 16), 1.0) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        if step == 0:
            silent = [n for n, p in G.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
            assert silent == ["torgb4.weight", "torgb4.bias"]    # only the fade-in RGB layer, weighted 0 at alpha 1
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_summary_of_the_paper_setting_counts_26_2m_for_g_and_23_1m_for_d() -> None:
    G, D = model_summaries(ModelConfig(arch="stylegan"), 1024)
    assert abs(G.total - 26.2e6) / 26.2e6 < 0.01
    assert abs(D.total - 23.1e6) / 23.1e6 < 0.01
    names = [r.name for r in G.rows]
    assert names[:8] == [f"mapping.fc{i}" for i in range(8)] and "b1024.epi1.style" in names
    with torch.device("meta"):
        net = StyleGenerator(ModelConfig(arch="stylegan"), 1024)
    assert G.total == sum(p.numel() for n, p in net.named_parameters() if not n.startswith("torgb512"))
