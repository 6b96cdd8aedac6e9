"""Layer behaviour: equalized learning rate, pixel norm, minibatch stddev, 2x resampling."""
from __future__ import annotations

import math

import pytest
import torch

from pggan.nn.layers import (EqualizedConv2d, EqualizedLinear, MinibatchStddev, PixelNorm, downsample2x,
                             mbstd_group, upsample2x)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("gain", [math.sqrt(2), 1.0, math.sqrt(2) / 4])
def test_linear_weights_stored_unit_normal_and_scaled_at_run_time(gain: float) -> None:
    layer = EqualizedLinear(512, 256, gain=gain)
    assert layer.weight.std().item() == pytest.approx(1.0, abs=0.01)      # stored: N(0, 1), not He-initialized
    assert torch.all(layer.bias == 0)
    x = torch.randn(4096, 512)
    y = layer(x)
    # Effective weight std is gain/sqrt(fan_in), so a unit-variance input gives an output of std ~= gain.
    assert y.std().item() == pytest.approx(gain, rel=0.05)


def test_conv_effective_weight_std_is_gain_over_sqrt_fan_in() -> None:
    layer = EqualizedConv2d(64, 128, 3, padding=0)
    fan_in = 64 * 9
    assert layer.weight.std().item() == pytest.approx(1.0, abs=0.02)
    assert torch.all(layer.bias == 0)
    y = layer(torch.randn(16, 64, 12, 12))                                  # [16, 128, 10, 10]
    assert y.shape == (16, 128, 10, 10)
    assert y.std().item() == pytest.approx(math.sqrt(2), rel=0.05)
    # Run-time scaling: doubling the stored weights doubles the output (no scale baked into the parameter).
    x = torch.randn(2, 64, 5, 5)
    with torch.no_grad():
        before = layer(x)
        layer.weight.mul_(2)
        assert torch.allclose(layer(x), 2 * before, atol=1e-5)
    effective = torch.nn.functional.conv2d(x, layer.weight * math.sqrt(2) / math.sqrt(fan_in))
    assert torch.allclose(layer(x), effective, atol=1e-5)


def test_lrelu_activation_has_slope_point_two() -> None:
    layer = EqualizedLinear(1, 1, gain=1.0, activation="lrelu")
    with torch.no_grad():
        layer.weight.fill_(1.0)
    assert layer(torch.tensor([[-5.0]])).item() == pytest.approx(-1.0)
    assert layer(torch.tensor([[3.0]])).item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="activation='relu'"):
        EqualizedLinear(1, 1, activation="relu")


def test_pixel_norm_gives_unit_mean_square_per_pixel() -> None:
    x = torch.randn(3, 16, 5, 5) * 7 + 2
    y = PixelNorm()(x)
    assert torch.allclose(y.square().mean(dim=1), torch.ones(3, 5, 5), atol=1e-5)
    assert torch.allclose(y, x / x.square().mean(dim=1, keepdim=True).sqrt(), atol=1e-6)
    assert torch.all(PixelNorm()(torch.zeros(1, 4, 2, 2)) == 0)            # epsilon keeps zeros finite


def test_minibatch_stddev_appends_exactly_one_channel_and_keeps_input() -> None:
    x = torch.randn(8, 5, 4, 4)
    y = MinibatchStddev(4)(x)
    assert y.shape == (8, 6, 4, 4)
    assert torch.equal(y[:, :5], x)
    assert torch.all(y[:, 5] == y[:, 5, :1, :1])                           # constant over pixels


def test_minibatch_stddev_is_zero_up_to_epsilon_for_identical_images() -> None:
    x = torch.randn(1, 5, 4, 4).repeat(4, 1, 1, 1)
    y = MinibatchStddev(4)(x)
    assert torch.allclose(y[:, 5], torch.full((4, 4, 4), math.sqrt(1e-8)), atol=1e-7)


def test_minibatch_stddev_matches_hand_computed_group_std() -> None:
    # Group of 2 with values a and b everywhere: std over the group is |a - b| / 2.
    x = torch.cat([torch.full((1, 3, 2, 2), 1.0), torch.full((1, 3, 2, 2), 4.0)])
    y = MinibatchStddev(4)(x)
    assert torch.allclose(y[:, 3], torch.full((2, 2, 2), math.sqrt(1.5 ** 2 + 1e-8)))


def test_minibatch_stddev_groups_are_independent() -> None:
    # N=4, group 2: members are samples (0, 2) and (1, 3); only the second group varies.
    x = torch.zeros(4, 1, 1, 1)
    x[1], x[3] = -1.0, 1.0
    y = MinibatchStddev(2)(x)[:, 1].flatten()
    assert torch.allclose(y, torch.tensor([1e-4, 1.0, 1e-4, 1.0]), atol=1e-6)


@pytest.mark.parametrize("batch,expected", [(8, 4), (2, 2), (1, 1), (6, 3), (7, 1), (9, 3)])
def test_mbstd_group_is_the_largest_divisor_of_the_batch_up_to_four(batch: int, expected: int) -> None:
    assert mbstd_group(4, batch) == expected
    MinibatchStddev(4)(torch.randn(batch, 2, 4, 4))                        # no reshape error


def test_upsample_is_nearest_and_downsample_is_box_average() -> None:
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    up = upsample2x(x)
    assert torch.equal(up[0, 0], torch.tensor([[0.0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]))
    assert torch.equal(downsample2x(up), x)
    assert downsample2x(torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])).item() == pytest.approx(3.0)


def test_layers_print_their_settings() -> None:
    text = repr(EqualizedConv2d(3, 8, 1, gain=1.0))
    assert "in_channels=3" in text and "gain=1" in text and "activation=linear" in text
    assert "group_size=4" in repr(MinibatchStddev(4))
