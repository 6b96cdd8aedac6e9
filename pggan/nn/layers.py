"""PGGAN building blocks: equalized-learning-rate conv/linear, pixel norm, minibatch stddev, 2x resampling."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = 0.2
ACTIVATIONS = ("linear", "lrelu")


def _activate(x: torch.Tensor, activation: str) -> torch.Tensor:
    return F.leaky_relu(x, LRELU_SLOPE) if activation == "lrelu" else x


def _engine_will_need(node: object) -> bool:
    """Whether the running backward pass will reach autograd node `node` (None: a tensor without history)."""
    if node is None:
        return False
    try:
        return torch._C._will_engine_execute_node(node)
    except (AttributeError, RuntimeError):                     # API gone, or asked outside a backward pass
        return True


class _ConvInputGrad(torch.autograd.Function):
    """dL/dx of a stride-1 conv, gx = conv_transpose(gy, w), as an op of its own whose backward is the conv's
    forward (for gy) and the conv's weight gradient (for w).

    The gradient penalty differentiates this once more. PyTorch's own formula for that second derivative
    computes the weight term as a convolution of batch-transposed tensors ([C, N, H, W] * [C', N, H, W]), which
    oneDNN runs at about a third of the machine's matmul peak; the weight-gradient kernel runs near the peak.
    The maths is the same: <ggx, conv_transpose(gy, w)> = <conv(ggx, w), gy>.
    """

    @staticmethod
    def forward(ctx, gy: torch.Tensor, w: torch.Tensor, x_shape: torch.Size, padding: int) -> torch.Tensor:
        ctx.save_for_backward(gy, w)
        ctx.padding = padding
        return F.grad.conv2d_input(x_shape, w, gy, padding=padding)               # [N, C_in, H, W]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, ggx: torch.Tensor):
        gy, w = ctx.saved_tensors
        p = ctx.padding
        need_gy, need_w = ctx.needs_input_grad[:2]
        g_gy = F.conv2d(ggx, w, padding=p) if need_gy else None                   # [N, C_out, H', W']
        g_w = torch.ops.aten.convolution_backward(gy, ggx, w, None, [1, 1], [p, p], [1, 1], False, [0, 0], 1,
                                                  [False, True, False])[1] if need_w else None
        return g_gy, g_w, None, None


class _Conv2d(torch.autograd.Function):
    """F.conv2d (stride 1) whose input gradient is _ConvInputGrad, so that its second derivative is fast.

    Weight and bias gradients come from the usual kernel, and only when the running backward pass needs them:
    the penalty's autograd.grad(..., x_hat) needs none, which the engine tells through the (non-leaf) scaled
    weight's node.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.padding, ctx.has_bias, ctx.w_node = padding, b is not None, w.grad_fn
        return F.conv2d(x, w, b, padding=padding)                                 # [N, C_out, H', W']

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        x, w = ctx.saved_tensors
        p = ctx.padding
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if ctx.w_node is not None:                              # skip parameter grads this pass will not use
            need_w = need_w and _engine_will_need(ctx.w_node)
            need_b = need_b and need_w
        gx = _ConvInputGrad.apply(gy, w, x.shape, p) if need_x else None         # [N, C_in, H, W]
        gw = gb = None
        if need_w or need_b:
            _, gw, gb = torch.ops.aten.convolution_backward(
                gy, x, w, [w.shape[0]] if ctx.has_bias else None, [1, 1], [p, p], [1, 1], False, [0, 0], 1,
                [False, bool(need_w), bool(need_b and ctx.has_bias)])
        return gx, gw if need_w else None, gb if need_b else None, None


def conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, padding: int) -> torch.Tensor:
    """F.conv2d(x, w, b, padding=padding) at stride 1; on the CPU in fp32 with a fast second derivative and in
    channels-last layout (NHWC, oneDNN's native one: no reorder of every activation to and from a blocked
    layout per call; the output follows the weight's layout, so the whole network runs NHWC)."""
    if x.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
        return F.conv2d(x, w, b, padding=padding)
    return _Conv2d.apply(x, w.contiguous(memory_format=torch.channels_last), b, padding)


def _check_activation(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r}: expected one of {ACTIVATIONS}")
    return activation


class EqualizedConv2d(torch.nn.Module):
    """Conv whose N(0,1) weights are scaled by gain/sqrt(fan_in) at run time (paper sec. 4.1), not at init."""

    def __init__(self,
        in_channels:  int,                  # Input feature maps.
        out_channels: int,                  # Output feature maps.
        kernel_size:  int,                  # Square kernel side.
        gain:         float = SQRT2,        # He gain; 1 for linear outputs (toRGB).
        activation:   str = "linear",       # "linear" or "lrelu" (leaky ReLU, slope 0.2), applied after the bias.
        padding:      int | None = None,    # None = "same" (kernel // 2); 0 = valid.
        bias:         bool = True,          # Add a per-channel bias (zero-initialized).
    ):
        super().__init__()
        self.activation = _check_activation(activation)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.gain = gain
        self.padding = kernel_size // 2 if padding is None else padding
        self.weight = torch.nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = torch.nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = gain / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        x = conv2d(x, w, self.bias, padding=self.padding)       # [N, out, H', W']
        return _activate(x, self.activation)

    def summary_label(self) -> str:
        return f"Conv {self.kernel_size}x{self.kernel_size}"

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
                f"gain={self.gain:g}, activation={self.activation}, padding={self.padding}, "
                f"bias={self.bias is not None}")


class EqualizedLinear(torch.nn.Module):
    """Fully-connected layer with the same run-time weight scaling as EqualizedConv2d."""

    def __init__(self,
        in_features:  int,                  # Input features (fan-in).
        out_features: int,                  # Output features.
        gain:         float = SQRT2,        # He gain; 1 for D's score output.
        activation:   str = "linear",       # "linear" or "lrelu" (leaky ReLU, slope 0.2), applied after the bias.
        bias:         bool = True,          # Add a bias (zero-initialized).
    ):
        super().__init__()
        self.activation = _check_activation(activation)
        self.in_features = in_features
        self.out_features = out_features
        self.gain = gain
        self.weight = torch.nn.Parameter(torch.randn(out_features, in_features))
        self.bias = torch.nn.Parameter(torch.zeros(out_features)) if bias else None
        self.weight_gain = gain / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias)  # [N, out]
        return _activate(x, self.activation)

    def summary_label(self) -> str:
        return "Fully-connected"

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, gain={self.gain:g}, "
                f"activation={self.activation}, bias={self.bias is not None}")


class PixelNorm(torch.nn.Module):
    """Normalize each pixel's feature vector to unit average square: x * rsqrt(mean_c(x^2) + eps)."""

    def __init__(self,
        eps: float = 1e-8,                  # Keeps all-zero feature vectors finite.
    ):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + self.eps)  # [N, C, ...] unchanged

    def extra_repr(self) -> str:
        return f"eps={self.eps:g}"


def mbstd_group(group_size: int, batch: int) -> int:
    """Largest group <= min(group_size, batch) that divides the batch evenly."""
    g = max(1, min(group_size, batch))
    while batch % g:
        g -= 1
    return g


class MinibatchStddev(torch.nn.Module):
    """Append one feature map: the stddev over a group of samples, averaged over channels and pixels."""

    def __init__(self,
        group_size: int = 4,                # Samples per group; min(group_size, N), reduced to divide N.
        eps:        float = 1e-8,           # Added to the variance before the square root.
    ):
        super().__init__()
        self.group_size = group_size
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape                                    # [NCHW]  Input shape.
        G = mbstd_group(self.group_size, N)
        y = x.reshape(G, -1, C, H, W).float()                   # [GMCHW] Split minibatch into M groups of size G.
        y = y - y.mean(dim=0)                                   # [GMCHW] Subtract mean over group.
        y = y.square().mean(dim=0)                              # [MCHW]  Variance over group.
        y = (y + self.eps).sqrt()                               # [MCHW]  Stddev over group.
        y = y.mean(dim=[1, 2, 3])                               # [M]     Average over channels and pixels.
        y = y.to(x.dtype).reshape(-1, 1, 1, 1)                  # [M111]
        y = y.repeat(G, 1, H, W)                                # [N1HW]  Replicate over group and pixels.
        return torch.cat([x, y], dim=1)                         # [N,C+1,H,W] Append as one new feature map.

    def summary_label(self) -> str:
        return "Minibatch stddev"

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, eps={self.eps:g}"


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling: [N, C, H, W] -> [N, C, 2H, 2W]."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x2 box (average-pool) downsampling: [N, C, H, W] -> [N, C, H/2, W/2]."""
    return F.avg_pool2d(x, kernel_size=2)


class Upsample2x(torch.nn.Module):
    """Module form of upsample2x, so that network summaries list it as a layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample2x(x)

    def summary_label(self) -> str:
        return "Upsample"


class Downsample2x(torch.nn.Module):
    """Module form of downsample2x, so that network summaries list it as a layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return downsample2x(x)

    def summary_label(self) -> str:
        return "Downsample"
