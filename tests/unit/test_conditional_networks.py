"""Conditional G and D (num_classes > 0): the label picks what G draws, D adds class logits, growing and
checkpoints keep both; unconditional networks are unchanged."""
from __future__ import annotations

import pytest
import torch

from pggan.config import ModelConfig
from pggan.nn.layers import downsample2x, upsample2x
from pggan.nn.networks import Discriminator, Generator, split_d_output
from pggan.nn.summary import model_summaries

SMALL = ModelConfig(latent_dim=16, fmap_base=128, fmap_max=16, mbstd_group_size=4)
K = 3


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def labels_for(n: int) -> torch.Tensor:
    return torch.arange(n) % K                                             # [n] int64, every class


def train_a_little(net: torch.nn.Module, make_args, steps: int = 5) -> None:
    """A few Adam steps on an arbitrary objective, so that no weight (label layers included) is at its init."""
    opt = torch.optim.Adam(net.parameters(), lr=0.05, betas=(0.0, 0.99))
    for _ in range(steps):
        out = net(*make_args())
        loss = (out - 0.3).square().mean() + out.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    return x / (x.square().mean(dim=1, keepdim=True) + 1e-8).sqrt()


@pytest.mark.parametrize("res", [4, 8, 16])
def test_conditional_shapes_d_gives_a_score_and_one_logit_per_class(res: int) -> None:
    G, D = Generator(SMALL, res, num_classes=K), Discriminator(SMALL, res, num_classes=K)
    images = G(torch.randn(6, 16), 0.5, labels_for(6))
    assert images.shape == (6, 3, res, res)
    out = D(images, 0.5)
    assert out.shape == (6, 1 + K)
    scores, logits = split_d_output(out)
    assert scores.shape == (6,) and logits.shape == (6, K)
    assert torch.equal(scores, out[:, 0]) and torch.equal(logits, out[:, 1:])


def test_split_d_output_of_an_unconditional_d_has_no_logits() -> None:
    out = Discriminator(SMALL, 8)(torch.randn(4, 3, 8, 8))
    scores, logits = split_d_output(out)
    assert scores is out and logits is None


def test_the_label_changes_the_image_and_the_same_label_repeats_it() -> None:
    G = Generator(SMALL, 8, num_classes=K)
    z = torch.randn(1, 16).repeat(K, 1)                                    # one latent, every class
    with torch.no_grad():
        by_class = G(z, 1.0, torch.arange(K))
        again = G(z, 1.0, torch.arange(K))
    assert torch.equal(by_class, again)
    for a in range(K):
        for b in range(a + 1, K):
            assert (by_class[a] - by_class[b]).abs().mean() > 1e-3


def test_the_label_embedding_is_joined_to_the_latent_before_the_pixel_norm() -> None:
    G = Generator(SMALL, 4, num_classes=K)
    train_a_little(G, lambda: (torch.randn(6, 16), 1.0, labels_for(6)))
    z, y = torch.randn(6, 16), labels_for(6)
    with torch.no_grad():
        joined = torch.cat([z, G.b4.embed.weight[y]], dim=1)              # [6, 32]: latent then embedding
        x = pixel_norm(G.b4.dense(pixel_norm(joined)))                     # [6, C, 4, 4]
        expected = G.torgb4(pixel_norm(G.b4.conv(x)))
        assert torch.allclose(G(z, 1.0, y), expected, atol=1e-5)
        # Normalised together: scaling latent and embedding alike changes nothing, the latent alone does.
        scaled = G.b4.dense(pixel_norm(3.0 * joined))
        assert torch.allclose(scaled, G.b4.dense(pixel_norm(joined)), atol=1e-5)
        assert not torch.allclose(G(3.0 * z, 1.0, y), G(z, 1.0, y), atol=1e-3)


def test_conditional_parameters_add_the_embedding_the_wider_dense_layer_and_the_logits() -> None:
    L, C4, C_dense = SMALL.latent_dim, SMALL.channels(4), SMALL.channels(2)
    count = lambda net: sum(p.numel() for p in net.parameters())          # noqa: E731
    G0, G3 = Generator(SMALL, 8), Generator(SMALL, 8, num_classes=K)
    D0, D3 = Discriminator(SMALL, 8), Discriminator(SMALL, 8, num_classes=K)
    assert G3.b4.embed.weight.shape == (K, L)                              # one latent-sized vector per class
    assert G3.b4.dense.weight.shape == (C4 * 16, 2 * L)                   # [latent, embedding] -> 4x4
    assert count(G3) - count(G0) == K * L + C4 * 16 * L
    assert count(D3) - count(D0) == K * (C_dense + 1)                      # K more output units
    summary_g, summary_d = model_summaries(SMALL, 8, num_classes=K)
    assert summary_g.total_with_fade_in == count(G3) and summary_d.total_with_fade_in == count(D3)
    assert [r.layer for r in summary_g.rows][0] == "Label embedding"
    assert next(r for r in summary_d.rows if r.name == "b4.out").shape == (1 + K, 1, 1)


def test_unconditional_networks_have_no_label_layers() -> None:
    # num_classes=0 is the default: the same layers, so the same weights for the same seed and the same output.
    torch.manual_seed(1)
    G_default, D_default = Generator(SMALL, 8), Discriminator(SMALL, 8)
    torch.manual_seed(1)
    G0, D0 = Generator(SMALL, 8, num_classes=0), Discriminator(SMALL, 8, num_classes=0)
    assert G0.b4.embed is None and G0.b4.dense.in_features == SMALL.latent_dim
    assert D0.b4.out.out_features == 1
    for a, b in ((G_default, G0), (D_default, D0)):
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    z = torch.randn(4, 16)
    assert torch.equal(G0(z, 0.5), G_default(z, 0.5))
    assert D0(G0(z, 0.5), 0.5).shape == (4,)


@pytest.mark.parametrize("res", [4, 8])
def test_grown_conditional_generator_at_alpha_0_reproduces_the_smaller_one_per_class(res: int) -> None:
    G = Generator(SMALL, res, num_classes=K)
    train_a_little(G, lambda: (torch.randn(6, 16), 1.0, labels_for(6)))
    G2 = G.grown()
    assert G2.num_classes == K
    assert torch.equal(G2.b4.embed.weight, G.b4.embed.weight)
    z, y = torch.randn(6, 16), labels_for(6)
    with torch.no_grad():
        assert torch.allclose(G2(z, 0.0, y), upsample2x(G(z, 1.0, y)), atol=1e-5)


@pytest.mark.parametrize("res", [4, 8])
def test_grown_conditional_discriminator_at_alpha_0_keeps_scores_and_logits(res: int) -> None:
    D = Discriminator(SMALL, res, num_classes=K)
    train_a_little(D, lambda: (torch.randn(8, 3, res, res), 1.0))
    D2 = D.grown()
    assert D2.num_classes == K
    x = torch.randn(8, 3, 2 * res, 2 * res)
    with torch.no_grad():
        assert torch.allclose(D2(x, 0.0), D(downsample2x(x), 1.0), atol=1e-5)   # [8, 1 + K]


def test_a_conditional_checkpoint_loads_into_a_larger_conditional_network() -> None:
    G = Generator(SMALL, 8, num_classes=K)
    train_a_little(G, lambda: (torch.randn(6, 16), 1.0, labels_for(6)))
    G16 = Generator(SMALL, 16, num_classes=K)
    report = G16.load_grown_state_dict(G.state_dict())
    assert "b4.embed.weight" in report["copied"]
    assert torch.equal(G16.b4.embed.weight, G.b4.embed.weight)


@pytest.mark.parametrize("cls", [Generator, Discriminator])
@pytest.mark.parametrize("saved, built", [(0, K), (K, 0), (K, K + 1)])
def test_a_checkpoint_with_other_classes_is_refused_naming_them(cls: type, saved: int, built: int) -> None:
    state = cls(SMALL, 4, num_classes=saved).state_dict()
    with pytest.raises(ValueError, match=f"build it with num_classes={saved}") as err:
        cls(SMALL, 8, num_classes=built).load_grown_state_dict(state)
    assert "\n" not in str(err.value)


def test_labels_are_refused_unless_the_generator_is_conditional_and_they_fit() -> None:
    G0, G3 = Generator(SMALL, 4), Generator(SMALL, 4, num_classes=K)
    z = torch.randn(2, 16)
    with pytest.raises(ValueError, match="unconditional generator"):
        G0(z, 1.0, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="conditional on 3 classes: pass labels"):
        G3(z, 1.0)
    with pytest.raises(ValueError, match=r"expected class indices \[2\] as int64"):
        G3(z, 1.0, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="int64"):
        G3(z, 1.0, torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_num_classes_must_be_a_non_negative_int(bad) -> None:
    with pytest.raises(ValueError, match="num_classes="):
        Generator(SMALL, 4, num_classes=bad)


def test_every_conditional_parameter_gets_a_gradient() -> None:
    # DDP without find_unused_parameters: the embedding and the logit rows must be in the graph too.
    G, D = Generator(SMALL, 8, num_classes=K), Discriminator(SMALL, 8, num_classes=K)
    y = labels_for(4)
    scores, logits = split_d_output(D(G(torch.randn(4, 16), 1.0, y), 1.0))
    (scores.mean() + torch.nn.functional.cross_entropy(logits, y)).backward()
    missing = [n for net in (G, D) for n, p in net.named_parameters() if p.grad is None]
    assert missing == []
    assert G.b4.embed.weight.grad.abs().sum() > 0
