"""PGGAN Generator and Discriminator (paper Table 2): built for a resolution, grown from a smaller one, fade-in."""
from __future__ import annotations

from typing import Mapping

import torch

from pggan.config import ModelConfig
from pggan.nn.layers import (LRELU_SLOPE, SQRT2, Downsample2x, EqualizedConv2d, EqualizedLinear, MinibatchStddev,
                             PixelNorm, Upsample2x, downsample2x, upsample2x)
from pggan.resolutions import is_resolution, resolutions

IMAGE_CHANNELS = 3


def check_resolution(resolution: int) -> int:
    if not is_resolution(resolution):
        raise ValueError(f"resolution={resolution!r}: must be a power of two >= 4 (4, 8, 16, ...)")
    return resolution


def check_alpha(alpha: float) -> float:
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha={alpha!r}: the fade-in weight must be in [0, 1] (0 = old resolution, 1 = new)")
    return float(alpha)


def block_resolutions(resolution: int) -> list[int]:
    """[4, 8, ..., resolution]: one block per resolution, the 4x4 one first."""
    return resolutions(resolution)


# ----------------------------------------------------------------------------------------------------------------
# Generator.

class DenseTo4x4(EqualizedLinear):
    """G's first layer (Table 2 "Conv 4x4"): dense latent -> C*16, reshaped to [C, 4, 4], one bias per channel."""

    def __init__(self,
        latent_dim: int,                    # Latent vector size.
        channels:   int,                    # Feature maps of the 4x4 output.
    ):
        # gain sqrt(2)/4 as in the official code (kept there "to match the original Theano implementation").
        super().__init__(latent_dim, channels * 16, gain=SQRT2 / 4, activation="lrelu", bias=False)
        self.channels = channels
        self.bias = torch.nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.linear(x, self.weight * self.weight_gain)   # [N, C*16]
        x = x.reshape(-1, self.channels, 4, 4) + self.bias.reshape(1, -1, 1, 1)  # [N, C, 4, 4]
        return torch.nn.functional.leaky_relu(x, LRELU_SLOPE)

    def summary_label(self) -> str:
        return "Conv 4x4"

    def extra_repr(self) -> str:
        return f"latent_dim={self.in_features}, out=[{self.channels}, 4, 4], gain={self.gain:g}, activation=lrelu"


class GeneratorInputBlock(torch.nn.Module):
    """b4 of G: pixel-normalized latent -> 4x4 features -> conv 3x3."""

    def __init__(self, latent_dim: int, channels: int):
        super().__init__()
        self.norm = PixelNorm()
        self.dense = DenseTo4x4(latent_dim, channels)
        self.conv = EqualizedConv2d(channels, channels, 3, activation="lrelu")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.dense(self.norm(z)))                 # [N, C, 4, 4]
        return self.norm(self.conv(x))                          # [N, C, 4, 4]


class GeneratorBlock(torch.nn.Module):
    """b{R} of G for R >= 8: upsample x2, conv 3x3, conv 3x3 (lrelu + pixel norm after each conv)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up = Upsample2x()
        self.conv0 = EqualizedConv2d(in_channels, out_channels, 3, activation="lrelu")
        self.conv1 = EqualizedConv2d(out_channels, out_channels, 3, activation="lrelu")
        self.norm = PixelNorm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(x)                                          # [N, C_in, 2H, 2W]
        x = self.norm(self.conv0(x))                            # [N, C_out, 2H, 2W]
        return self.norm(self.conv1(x))


class _Progressive(torch.nn.Module):
    """What G and D share: blocks named b4..b{R}, RGB layers for R and R/2, loading a smaller net's weights."""

    rgb_prefix = ""                                             # "torgb" or "fromrgb".

    def __init__(self, model: ModelConfig, resolution: int):
        super().__init__()
        self.model = model
        self.resolution = check_resolution(resolution)

    def block(self, res: int) -> torch.nn.Module:
        return getattr(self, f"b{res}")

    def rgb(self, res: int) -> torch.nn.Module:
        return getattr(self, f"{self.rgb_prefix}{res}")

    def fade_in_layer_names(self) -> list[str]:
        """Modules used only while fading in (the R/2 RGB layer); not part of the paper's Table 2 count."""
        return [f"{self.rgb_prefix}{self.resolution // 2}"] if self.resolution > 4 else []

    def load_grown_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, list[str]]:
        """Copy the weights of a smaller (or same-size) network of the same config; the rest stays fresh.

        Returns {"copied": keys loaded, "fresh": keys left at init, "dropped": old fade-in RGB keys not needed}.
        """
        own = self.state_dict()
        kind = type(self).__name__
        copied, dropped = [], []
        for key, value in state_dict.items():
            head = key.split(".", 1)[0]
            if key not in own:
                if head == "module":
                    raise ValueError(f"{kind}: state dict key {key!r} has the 'module.' prefix of a DDP-wrapped "
                                     "network; save or pass `ddp_model.module.state_dict()` instead")
                if not head.startswith(self.rgb_prefix):
                    raise ValueError(f"{kind} at {self.resolution}x{self.resolution} has no layer {key!r}: the "
                                     "state dict comes from a larger or different network; load it into a "
                                     "network of at least its resolution")
                dropped.append(key)
                continue
            if tuple(value.shape) != tuple(own[key].shape):
                raise ValueError(f"{kind} layer {key!r}: checkpoint shape {tuple(value.shape)} != network shape "
                                 f"{tuple(own[key].shape)}; the checkpoint was made with a different model config "
                                 "(latent_dim / fmap_base / fmap_decay / fmap_max) - use the same model section")
            copied.append(key)
        if not any(k.startswith("b4.") for k in copied):
            raise ValueError(f"{kind}: the state dict has no b4.* weights; it is not a {kind} state dict")
        with torch.no_grad():
            for key in copied:
                own[key].copy_(state_dict[key])
        loaded = set(copied)
        return {"copied": copied, "fresh": [k for k in own if k not in loaded], "dropped": dropped}


class Generator(_Progressive):
    """G(z [N, latent], alpha) -> images [N, 3, R, R] (linear output, roughly [-1, 1])."""

    rgb_prefix = "torgb"

    def __init__(self,
        model:      ModelConfig,            # latent_dim and the feature-map schedule.
        resolution: int,                    # Output resolution R (power of two >= 4).
    ):
        super().__init__(model, resolution)
        self.b4 = GeneratorInputBlock(model.latent_dim, model.channels(4))
        for res in block_resolutions(resolution)[1:]:
            setattr(self, f"b{res}", GeneratorBlock(model.channels(res // 2), model.channels(res)))
        for res in sorted({resolution // 2, resolution} - {2}):
            setattr(self, f"torgb{res}", EqualizedConv2d(model.channels(res), IMAGE_CHANNELS, 1, gain=1.0))

    def forward(self, z: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        alpha = check_alpha(alpha)
        if z.ndim != 2 or z.shape[1] != self.model.latent_dim:
            raise ValueError(f"z has shape {tuple(z.shape)}; expected [N, {self.model.latent_dim}] (model.latent_dim)")
        R = self.resolution
        x = self.b4(z)                                          # [N, C4, 4, 4]
        for res in block_resolutions(R)[1:-1]:
            x = self.block(res)(x)                              # [N, C_res, res, res]
        if R == 4:
            return self.rgb(4)(x)                               # [N, 3, 4, 4]
        # Both branches always run (old one weighted 0 at alpha=1) so DDP sees every parameter used.
        old = upsample2x(self.rgb(R // 2)(x))                   # [N, 3, R, R]
        new = self.rgb(R)(self.block(R)(x))                     # [N, 3, R, R]
        return torch.lerp(old, new, alpha)


# ----------------------------------------------------------------------------------------------------------------
# Discriminator.

class DiscriminatorBlock(torch.nn.Module):
    """b{R} of D for R >= 8: conv 3x3, conv 3x3 (lrelu), 2x2 average pool."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3, activation="lrelu")
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3, activation="lrelu")
        self.down = Downsample2x()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.conv0(x))                           # [N, C_out, H, W]
        return self.down(x)                                     # [N, C_out, H/2, W/2]


class DiscriminatorOutputBlock(torch.nn.Module):
    """b4 of D: minibatch stddev, conv 3x3, conv 4x4 (valid), fully-connected -> one score."""

    def __init__(self, channels: int, dense_channels: int, mbstd_group_size: int):
        super().__init__()
        # As in the official code, a group size of 1 disables the layer (no extra feature map).
        self.mbstd = MinibatchStddev(mbstd_group_size) if mbstd_group_size > 1 else None
        extra = 1 if self.mbstd is not None else 0
        self.conv = EqualizedConv2d(channels + extra, channels, 3, activation="lrelu")
        self.conv4x4 = EqualizedConv2d(channels, dense_channels, 4, activation="lrelu", padding=0)
        self.out = EqualizedLinear(dense_channels, 1, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd is not None:
            x = self.mbstd(x)                                   # [N, C+1, 4, 4]
        x = self.conv(x)                                        # [N, C, 4, 4]
        x = self.conv4x4(x).flatten(1)                          # [N, C_dense]
        return self.out(x).squeeze(1)                           # [N]


class Discriminator(_Progressive):
    """D(images [N, 3, R, R], alpha) -> scores [N]."""

    rgb_prefix = "fromrgb"

    def __init__(self,
        model:      ModelConfig,            # Feature-map schedule and minibatch-stddev group size.
        resolution: int,                    # Input resolution R (power of two >= 4).
    ):
        super().__init__(model, resolution)
        # The final dense width is nf(0) = min(fmap_base, fmap_max) in the official code (512 in Table 2).
        self.b4 = DiscriminatorOutputBlock(model.channels(4), model.channels(2), model.mbstd_group_size)
        for res in block_resolutions(resolution)[1:]:
            setattr(self, f"b{res}", DiscriminatorBlock(model.channels(res), model.channels(res // 2)))
        for res in sorted({resolution // 2, resolution} - {2}):
            setattr(self, f"fromrgb{res}", EqualizedConv2d(IMAGE_CHANNELS, model.channels(res), 1,
                                                           activation="lrelu"))

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        alpha = check_alpha(alpha)
        R = self.resolution
        if x.ndim != 4 or tuple(x.shape[1:]) != (IMAGE_CHANNELS, R, R):
            raise ValueError(f"images have shape {tuple(x.shape)}; this discriminator expects "
                             f"[N, {IMAGE_CHANNELS}, {R}, {R}]")
        h = self.rgb(R)(x)                                      # [N, C_R, R, R]
        if R > 4:
            new = self.block(R)(h)                              # [N, C_R/2, R/2, R/2]
            old = self.rgb(R // 2)(downsample2x(x))             # [N, C_R/2, R/2, R/2]
            h = torch.lerp(old, new, alpha)
            for res in reversed(block_resolutions(R)[1:-1]):
                h = self.block(res)(h)                          # [N, C_res/2, res/2, res/2]
        return self.b4(h)                                       # [N]


# ----------------------------------------------------------------------------------------------------------------
# Growing.

def _grow(old: _Progressive, cls: type) -> _Progressive:
    param = next(old.parameters())
    new = cls(old.model, old.resolution * 2).to(device=param.device, dtype=param.dtype)
    new.load_grown_state_dict(old.state_dict())
    return new


def grow_generator(old: Generator) -> Generator:
    """A Generator at twice `old`'s resolution with all of old's trained layers; the new block starts fresh."""
    return _grow(old, Generator)


def grow_discriminator(old: Discriminator) -> Discriminator:
    """A Discriminator at twice `old`'s resolution with all of old's trained layers; the new block starts fresh."""
    return _grow(old, Discriminator)
