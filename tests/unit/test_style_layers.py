"""StyleGAN layers: AdaIN sets each channel's statistics from w, noise injection, equalized LR with an lr multiplier."""
from __future__ import annotations

import math

import pytest
import torch

from pggan.nn.style_layers import (AdaIN, Blur, EqualizedDense, MappingNetwork, NoiseInjection, StyleConv,
                                   instance_norm)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_adain_output_channel_mean_and_std_are_the_style_from_w_whatever_the_input_statistics() -> None:
    C, W = 6, 10
    ada = AdaIN(C, W)
    with torch.no_grad():
        ada.affine.weight.normal_()
        ada.affine.bias.normal_()
    w = torch.randn(3, W)
    x = torch.randn(3, C, 8, 8)
    out = ada(x, w)
    style = torch.nn.functional.linear(w, ada.affine.weight * ada.affine.weight_gain, ada.affine.bias)  # [N, 2C]
    ys, yb = style[:, :C] + 1, style[:, C:]
    torch.testing.assert_close(out.mean(dim=[2, 3]), yb, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.std(dim=[2, 3], unbiased=False), ys.abs(), atol=1e-4, rtol=1e-4)
    # The input's own per-channel scale and shift are normalized away: only w decides them.
    shifted = x * torch.rand(1, C, 1, 1).add(0.5) * 7 + torch.randn(1, C, 1, 1) * 3
    torch.testing.assert_close(ada(shifted, w), out, atol=1e-4, rtol=1e-4)


def test_a_fresh_adain_passes_the_instance_normalized_features_through() -> None:
    ada = AdaIN(4, 8)
    with torch.no_grad():
        ada.affine.weight.zero_()
    x = torch.randn(2, 4, 5, 5) * 3 + 1
    torch.testing.assert_close(ada(x, torch.randn(2, 8)), instance_norm(x))


def test_noise_starts_switched_off_and_adds_one_shared_gaussian_image_scaled_per_channel() -> None:
    noise = NoiseInjection(channels=3, resolution=64)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(noise(x), x)                     # learned scale starts at 0
    with torch.no_grad():
        noise.weight.copy_(torch.tensor([0.5, -2.0, 3.0]))
    added = (noise(x) - x) / noise.weight.reshape(1, 3, 1, 1)   # [N, C, H, W]: the noise image per channel
    torch.testing.assert_close(added[:, 0], added[:, 1])        # one image per sample, shared by the channels
    torch.testing.assert_close(added[:, 0], added[:, 2])
    assert not torch.allclose(added[0, 0], added[1, 0])         # a different image for each sample
    assert abs(added.mean().item()) < 0.05 and abs(added.std().item() - 1.0) < 0.05   # N(0, 1)


def test_random_noise_changes_every_call_and_const_noise_is_the_stored_image() -> None:
    noise = NoiseInjection(channels=2, resolution=8)
    with torch.no_grad():
        noise.weight.fill_(1.0)
    x = torch.zeros(3, 2, 8, 8)
    assert not torch.allclose(noise(x, "random"), noise(x, "random"))
    const = noise(x, "const")
    torch.testing.assert_close(const, noise.const.expand(3, 2, 8, 8))
    assert "const" in noise.state_dict()                        # checkpoints keep it
    with pytest.raises(ValueError, match="noise mode 'fixed'"):
        noise(x, "fixed")


@pytest.mark.parametrize("lr_mul", [1.0, 0.01])
def test_equalized_dense_stores_n01_over_lrmul_and_scales_by_he_std_times_lrmul_at_run_time(lr_mul: float) -> None:
    fan_in, out = 512, 512
    fc = EqualizedDense(fan_in, out, lr_multiplier=lr_mul)
    he_std = math.sqrt(2) / math.sqrt(fan_in)
    assert fc.weight_gain == pytest.approx(he_std * lr_mul)
    assert fc.weight.std().item() == pytest.approx(1.0 / lr_mul, rel=0.02)            # stored N(0, 1/lr_mul^2)
    assert (fc.weight * fc.weight_gain).std().item() == pytest.approx(he_std, rel=0.02)  # acts He-initialized
    with torch.no_grad():
        fc.bias.normal_()
    x = torch.randn(4, fan_in)
    torch.testing.assert_close(fc(x), x @ (fc.weight * he_std * lr_mul).T + fc.bias * lr_mul)


def test_lr_multiplier_slows_the_effective_weights_adam_step_by_that_factor() -> None:
    """Adam's first step moves every stored weight by ~lr, so the effective weight moves by lr * he_std * lr_mul."""
    lr, fan_in = 1e-3, 64
    steps = {}
    for lr_mul in (1.0, 0.01):
        torch.manual_seed(1)
        fc = EqualizedDense(fan_in, 16, lr_multiplier=lr_mul).double()   # fp64: stored weights are ~1/lr_mul
        before = (fc.weight * fc.weight_gain).detach().clone()
        opt = torch.optim.Adam(fc.parameters(), lr=lr, betas=(0.0, 0.99), eps=1e-12)
        fc(torch.randn(8, fan_in, dtype=torch.float64)).square().sum().backward()
        opt.step()
        steps[lr_mul] = ((fc.weight * fc.weight_gain).detach() - before).abs()
        torch.testing.assert_close(steps[lr_mul], torch.full_like(before, lr * math.sqrt(2 / fan_in) * lr_mul),
                                   rtol=1e-6, atol=0)
    assert steps[0.01].mean() / steps[1.0].mean() == pytest.approx(0.01, rel=1e-6)


def test_mapping_network_normalizes_z_and_uses_the_lr_multiplier_in_every_layer() -> None:
    f = MappingNetwork(latent_dim=16, w_dim=12, layers=8, lr_multiplier=0.01)
    z = torch.randn(5, 16)
    w = f(z)
    assert w.shape == (5, 12)
    torch.testing.assert_close(f(z * 10), w)                    # pixel norm first: the length of z is irrelevant
    layers = [m for m in f.modules() if isinstance(m, EqualizedDense)]
    assert len(layers) == 8 and all(m.lr_multiplier == 0.01 and m.activation == "lrelu" for m in layers)


def test_blur_is_the_normalized_121_binomial_filter() -> None:
    blur = Blur(2)
    impulse = torch.zeros(1, 2, 5, 5)
    impulse[:, :, 2, 2] = 1.0
    expected = torch.tensor([1.0, 2.0, 1.0])
    expected = torch.outer(expected, expected) / 16
    torch.testing.assert_close(blur(impulse)[0, 1, 1:4, 1:4], expected)
    flat = torch.full((1, 2, 6, 6), 3.0)
    torch.testing.assert_close(blur(flat)[..., 1:-1, 1:-1], flat[..., 1:-1, 1:-1])   # keeps the mean inside
    assert blur.state_dict() == {}                              # a fixed filter, not a weight


def test_upsampling_conv_doubles_the_size_and_adds_its_bias_after_the_blur() -> None:
    conv = StyleConv(4, 3, 3, up=True)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
    y = conv(torch.randn(2, 4, 4, 4))
    assert y.shape == (2, 3, 8, 8)
    torch.testing.assert_close(y, conv.bias.reshape(1, 3, 1, 1).expand(2, 3, 8, 8))  # borders not dimmed
