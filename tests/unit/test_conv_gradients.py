"""The CPU conv path (channels-last, custom second derivative) computes what F.conv2d computes, to float tolerance:
outputs, first derivatives, the gradient penalty's second derivatives, and a whole training step."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pggan.config import load_config
from pggan.losses import d_loss_wgan_gp
from pggan.nn import layers
from pggan.nn.layers import EqualizedConv2d, _Conv2d
from pggan.stage_nets import build_stage
from pggan.train_step import train_step


def plain_conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, padding: int) -> torch.Tensor:
    return F.conv2d(x, w, b, padding=padding)                   # the reference: PyTorch's own conv and formulas


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4) -> bool:
    """Equal up to fp32 summation-order noise, relative to the tensor's scale."""
    return bool((a - b).abs().max() <= rtol * b.abs().max() + 1e-7)


def penalty_style_grads(layer: EqualizedConv2d, x: torch.Tensor) -> list[torch.Tensor]:
    """Output, input gradient (create_graph, as the penalty takes it) and the weight/bias gradients of a loss
    that uses both, i.e. through the second derivative."""
    layer.zero_grad()
    x = x.clone().requires_grad_(True)
    y = layer(x)
    r = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (gx,) = torch.autograd.grad((y * r).sum(), x, create_graph=True)
    assert layer.weight.grad is None                            # the penalty's pass leaves the weights alone
    loss = gx.square().sum() + y.square().mean()
    loss.backward()
    return [y.detach(), gx.detach(), layer.weight.grad.clone(), layer.bias.grad.clone(), x.grad.clone()]


@pytest.mark.parametrize("kernel, padding, activation, size",
                         [(3, None, "lrelu", 8), (4, 0, "lrelu", 4), (1, None, "linear", 6)])
def test_conv_matches_pytorch_conv_through_the_second_derivative(monkeypatch, kernel, padding, activation, size):
    torch.manual_seed(0)
    layer = EqualizedConv2d(5, 7, kernel, activation=activation, padding=padding)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(4, 5, size, size)
    fast = penalty_style_grads(layer, x)
    monkeypatch.setattr(layers, "conv2d", plain_conv2d)
    reference = penalty_style_grads(layer, x)
    for name, a, b in zip(["output", "input grad", "weight grad", "bias grad", "x grad"], fast, reference):
        assert a.shape == b.shape and close(a, b), f"{name} differs from F.conv2d's"


def test_conv_second_derivative_passes_torch_gradgradcheck():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    f = lambda x, w, b: _Conv2d.apply(x, w * 0.5, b, 1)        # noqa: E731  (scaled, as the layer does)
    assert torch.autograd.gradcheck(f, (x, w, b), fast_mode=True)
    assert torch.autograd.gradgradcheck(f, (x, w, b), fast_mode=True)


def test_parameters_and_state_dict_keep_their_layout_and_names():
    layer = EqualizedConv2d(4, 6, 3)
    layer(torch.randn(2, 4, 8, 8)).sum().backward()
    assert layer.weight.is_contiguous() and layer.weight.grad.shape == layer.weight.shape
    assert list(layer.state_dict()) == ["weight", "bias"]       # checkpoints from earlier runs still load


def _wgan_gp_grads(D: torch.nn.Module, reals: torch.Tensor, fakes: torch.Tensor) -> list[torch.Tensor]:
    D.zero_grad()
    torch.manual_seed(3)                                        # same interpolation points u
    loss, _ = d_loss_wgan_gp(D, reals, fakes, 0.5)
    loss.backward()
    return [p.grad.clone() for p in D.parameters()]


def test_discriminator_penalty_gradients_match_pytorch_conv(monkeypatch):
    cfg = load_config("tiny.yaml")
    D = build_stage(cfg.model, cfg.optim, 8, 1e-3, "cpu", 0).D
    gen = torch.Generator().manual_seed(0)
    reals, fakes = (torch.rand(8, 3, 8, 8, generator=gen) * 2 - 1 for _ in range(2))
    fast = _wgan_gp_grads(D, reals, fakes)
    monkeypatch.setattr(layers, "conv2d", plain_conv2d)
    reference = _wgan_gp_grads(D, reals, fakes)
    for (name, _), a, b in zip(D.named_parameters(), fast, reference):
        assert close(a, b), f"D.{name}: WGAN-GP gradient differs from F.conv2d's"


def _steps(monkeypatch_conv, cfg, monkeypatch) -> list[torch.Tensor]:
    if monkeypatch_conv:
        monkeypatch.setattr(layers, "conv2d", plain_conv2d)
    nets = build_stage(cfg.model, cfg.optim, 8, 1e-3, "cpu", 0)
    torch.manual_seed(5)
    for i in range(2):
        x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(i)) * 2 - 1
        train_step(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, x, 0.5, cfg)
    return [p.detach().clone() for m in (nets.G, nets.D, nets.G_ema) for p in m.parameters()]


def test_training_steps_match_pytorch_conv(monkeypatch):
    cfg = load_config("tiny.yaml")
    fast = _steps(False, cfg, monkeypatch)
    reference = _steps(True, cfg, monkeypatch)
    # Adam normalizes each update, so fp32 noise in a near-zero gradient can move a weight by up to ~lr;
    # the weights must agree to well under one step's size.
    assert max((a - b).abs().max().item() for a, b in zip(fast, reference)) < 2e-4
