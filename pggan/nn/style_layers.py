"""StyleGAN building blocks: equalized dense with an lr multiplier, mapping network, noise, AdaIN, [1,2,1] blur."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pggan.nn.layers import LRELU_SLOPE, SQRT2, PixelNorm, conv2d, upsample2x

NOISE_MODES = ("random", "const")


def check_noise_mode(mode: str) -> str:
    if mode not in NOISE_MODES:
        raise ValueError(f"noise mode {mode!r}: expected one of {NOISE_MODES} (random: fresh per-pixel noise per "
                         "call; const: the noise images stored in the network)")
    return mode


# ----------------------------------------------------------------------------------------------------------------
# Resampling filter.

def blur_kernel(channels: int) -> torch.Tensor:
    """The normalized [1,2,1] x [1,2,1] binomial filter, one per channel for a depthwise conv: [C, 1, 3, 3]."""
    f = torch.tensor([1.0, 2.0, 1.0])
    k = torch.outer(f, f) / 16.0                                # [3, 3], sums to 1
    return k.expand(channels, 1, 3, 3).contiguous()


def blur2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Low-pass filter each channel ("same" size, zero padding): [N, C, H, W] -> [N, C, H, W]."""
    return F.conv2d(x, kernel.to(dtype=x.dtype), padding=1, groups=x.shape[1])


class Blur(torch.nn.Module):
    """The paper's bilinear resampling filter, applied after G's up-sampling and before D's down-sampling."""

    def __init__(self,
        channels: int,                      # Feature maps filtered (each on its own).
    ):
        super().__init__()
        self.channels = channels
        self.register_buffer("kernel", blur_kernel(channels), persistent=False)  # not a weight: not in checkpoints

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blur2d(x, self.kernel)                           # [N, C, H, W] unchanged

    def summary_label(self) -> str:
        return "Blur"

    def extra_repr(self) -> str:
        return f"channels={self.channels}, filter=[1,2,1]x[1,2,1]/16"


# ----------------------------------------------------------------------------------------------------------------
# Equalized dense layer with a learning-rate multiplier, and the mapping network.

class EqualizedDense(torch.nn.Module):
    """Fully-connected layer with equalized learning rate and a learning-rate multiplier (official get_weight).

    Weights are stored as N(0, 1/lr_mul^2) and scaled at run time by he_std * lr_mul (he_std = gain/sqrt(fan_in));
    the bias is stored unscaled and multiplied by lr_mul. The forward pass is that of an He-initialized layer,
    while Adam (whose step is about lr in stored units) moves the effective weights lr_mul times slower.
    """

    def __init__(self,
        in_features:   int,                 # Input features (fan-in).
        out_features:  int,                 # Output features.
        gain:          float = SQRT2,       # He gain; 1 for the style affines.
        lr_multiplier: float = 1.0,         # 0.01 in the mapping network.
        activation:    str = "linear",      # "linear" or "lrelu" (slope 0.2), applied after the bias.
        bias_init:     float = 0.0,         # Initial bias (in effective units).
    ):
        super().__init__()
        if activation not in ("linear", "lrelu"):
            raise ValueError(f"activation={activation!r}: expected 'linear' or 'lrelu'")
        if lr_multiplier <= 0:
            raise ValueError(f"lr_multiplier={lr_multiplier!r}: must be > 0")
        self.in_features, self.out_features = in_features, out_features
        self.gain, self.lr_multiplier, self.activation = gain, lr_multiplier, activation
        self.weight = torch.nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full((out_features,), float(bias_init) / lr_multiplier))
        self.weight_gain = gain / math.sqrt(in_features) * lr_multiplier   # he_std * lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_multiplier)  # [N, out]
        return F.leaky_relu(x, LRELU_SLOPE) if self.activation == "lrelu" else x

    def summary_label(self) -> str:
        return "Fully-connected"

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, gain={self.gain:g}, "
                f"lr_multiplier={self.lr_multiplier:g}, activation={self.activation}")


class MappingNetwork(torch.nn.Module):
    """f: z [N, Z] -> w [N, W]: pixel norm, then `layers` dense layers with leaky ReLU and an lr multiplier."""

    def __init__(self,
        latent_dim:    int,                 # z size.
        w_dim:         int,                 # w size (also the hidden width, as the official 512/512).
        layers:        int = 8,             # Dense layers.
        lr_multiplier: float = 0.01,        # Learning-rate multiplier of every layer.
    ):
        super().__init__()
        self.norm = PixelNorm()
        self.layers = layers
        for i in range(layers):
            setattr(self, f"fc{i}", EqualizedDense(latent_dim if i == 0 else w_dim, w_dim,
                                                   lr_multiplier=lr_multiplier, activation="lrelu"))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.norm(z)                                        # [N, Z]
        for i in range(self.layers):
            x = getattr(self, f"fc{i}")(x)                      # [N, W]
        return x


# ----------------------------------------------------------------------------------------------------------------
# Synthesis-layer parts.

class StyleConv(torch.nn.Module):
    """Equalized conv of the synthesis network: [nearest up x2], conv k x k, [blur], bias (the bias after the
    blur, so that the zero-padded filter does not dim it at the borders; official Conv0_up)."""

    def __init__(self,
        in_channels:  int,                  # Input feature maps.
        out_channels: int,                  # Output feature maps.
        kernel_size:  int = 3,              # Square kernel side ("same" padding).
        up:           bool = False,         # Up-sample x2 (nearest) before the conv and blur after it.
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size, self.up = in_channels, out_channels, kernel_size, up
        self.weight = torch.nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = torch.nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = SQRT2 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.blur = Blur(out_channels) if up else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = upsample2x(x)                                   # [N, C_in, 2H, 2W]
        x = conv2d(x, self.weight * self.weight_gain, None, padding=self.kernel_size // 2)  # [N, C_out, H', W']
        if self.blur is not None:
            x = self.blur(x)
        return x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)

    def summary_label(self) -> str:
        return f"Conv {self.kernel_size}x{self.kernel_size}" + (" up+blur" if self.up else "")

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"kernel_size={self.kernel_size}, up={self.up}")


class ConstInput(torch.nn.Module):
    """The learned constant 4x4 input (init ones) plus its bias, repeated over the batch."""

    def __init__(self,
        channels: int,                      # Feature maps.
        size:     int = 4,                  # Spatial side.
    ):
        super().__init__()
        self.const = torch.nn.Parameter(torch.ones(1, channels, size, size))
        self.bias = torch.nn.Parameter(torch.zeros(channels))

    def forward(self, n: int) -> torch.Tensor:
        x = self.const + self.bias.reshape(1, -1, 1, 1)         # [1, C, 4, 4]
        return x.expand(n, -1, -1, -1)                          # [N, C, 4, 4]

    def summary_label(self) -> str:
        return "Const 4x4"


class NoiseInjection(torch.nn.Module):
    """x + noise * weight: one N(0,1) image per sample ([N, 1, H, W], shared by the channels), scaled by a learned
    per-channel weight (init 0). mode "random" draws fresh noise every call; "const" uses the stored image."""

    def __init__(self,
        channels:   int,                    # Feature maps (one learned scale each).
        resolution: int,                    # Side of the stored constant noise image.
    ):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(channels))
        self.register_buffer("const", torch.randn(1, 1, resolution, resolution))  # kept in checkpoints

    def forward(self, x: torch.Tensor, mode: str = "random") -> torch.Tensor:
        N, C, H, W = x.shape                                    # [NCHW]
        if check_noise_mode(mode) == "random":
            noise = torch.randn(N, 1, H, W, device=x.device, dtype=x.dtype)   # [N, 1, H, W]
        else:
            noise = self.const.to(x.dtype)                      # [1, 1, H, W]
        return x + noise * self.weight.to(x.dtype).reshape(1, -1, 1, 1)

    def summary_label(self) -> str:
        return "Noise (B)"


def instance_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each feature map of each sample to zero mean, unit variance over its pixels (in fp32): [NCHW] unchanged."""
    y = x.float()
    y = y - y.mean(dim=[2, 3], keepdim=True)
    y = y * torch.rsqrt(y.square().mean(dim=[2, 3], keepdim=True) + eps)
    return y.to(x.dtype)


class AdaIN(torch.nn.Module):
    """AdaIN (StyleMod): instance norm, then x * (y_s + 1) + y_b, with (y_s, y_b) = A(w), an equalized affine
    w -> 2C (gain 1, bias 0: so a fresh layer passes the normalized features through)."""

    def __init__(self,
        channels: int,                      # Feature maps styled.
        w_dim:    int,                      # w size.
    ):
        super().__init__()
        self.channels = channels
        self.affine = EqualizedDense(w_dim, 2 * channels, gain=1.0)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.affine(w).to(x.dtype).reshape(-1, 2, self.channels, 1, 1)   # [N, 2, C, 1, 1]
        return instance_norm(x) * (style[:, 0] + 1) + style[:, 1]                # [N, C, H, W]

    def summary_label(self) -> str:
        return "AdaIN (A)"


class StyleEpilogue(torch.nn.Module):
    """What follows every synthesis conv (and the constant): noise, leaky ReLU, AdaIN with this layer's w."""

    def __init__(self, channels: int, resolution: int, w_dim: int):
        super().__init__()
        self.noise = NoiseInjection(channels, resolution)
        self.style = AdaIN(channels, w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        x = F.leaky_relu(self.noise(x, noise_mode), LRELU_SLOPE)    # [N, C, H, W]
        return self.style(x, w)
