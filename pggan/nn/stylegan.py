"""StyleGAN's generator (Karras et al. 2019, Fig. 1b) grown progressively like PGGAN's, and PGGAN's D with blur.

StyleGenerator has the Generator's interface (built for a resolution from a ModelConfig, forward(z, alpha),
blocks b4..b{R} with torgb{R/2} and torgb{R}, load_grown_state_dict), so stage jobs, EMA, checkpoints and
generation use it unchanged. Its extras: the tracked mean w (buffer `w_avg`), style mixing in training mode,
truncation, explicit per-layer w (`synthesis`), constant or random noise.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from pggan.config import ModelConfig
from pggan.nn.layers import EqualizedConv2d, upsample2x
from pggan.nn.networks import (IMAGE_CHANNELS, Discriminator, DiscriminatorBlock, _Progressive, block_resolutions,
                               check_alpha)
from pggan.nn.style_layers import (Blur, ConstInput, MappingNetwork, StyleConv, StyleEpilogue, check_noise_mode)

# The paper's Fig. 3 style groups, by resolution: coarse 4-8, middle 16-32, fine 64 and up.
STYLE_GROUPS = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, 2 ** 30)}


def num_style_layers(resolution: int) -> int:
    """Synthesis layers (= styles) of a generator at `resolution`: two per resolution, 18 at 1024."""
    return 2 * int(math.log2(resolution)) - 2


def layers_of(resolution: int, low: int, high: int) -> range:
    """Indices of the style layers at resolutions low..high (inclusive) in a generator at `resolution`."""
    first, last = 2 * int(math.log2(max(low, 4))) - 4, 2 * int(math.log2(high)) - 3
    return range(first, min(last + 1, num_style_layers(resolution)))


class StyleInputBlock(torch.nn.Module):
    """b4 of G: constant 4x4 -> noise/AdaIN (layer 0) -> conv 3x3 -> noise/AdaIN (layer 1)."""

    def __init__(self, channels: int, w_dim: int):
        super().__init__()
        self.const = ConstInput(channels)
        self.epi0 = StyleEpilogue(channels, 4, w_dim)
        self.conv = StyleConv(channels, channels, 3)
        self.epi1 = StyleEpilogue(channels, 4, w_dim)

    def forward(self, ws: torch.Tensor, noise_mode: str) -> torch.Tensor:
        x = self.epi0(self.const(ws.shape[0]), ws[:, 0], noise_mode)   # [N, C, 4, 4]
        return self.epi1(self.conv(x), ws[:, 1], noise_mode)            # [N, C, 4, 4]


class StyleBlock(torch.nn.Module):
    """b{R} of G for R >= 8: (up x2, conv 3x3, blur) -> noise/AdaIN -> conv 3x3 -> noise/AdaIN."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, w_dim: int):
        super().__init__()
        self.conv0 = StyleConv(in_channels, out_channels, 3, up=True)
        self.epi0 = StyleEpilogue(out_channels, resolution, w_dim)
        self.conv1 = StyleConv(out_channels, out_channels, 3)
        self.epi1 = StyleEpilogue(out_channels, resolution, w_dim)

    def forward(self, x: torch.Tensor, ws: torch.Tensor, noise_mode: str) -> torch.Tensor:
        x = self.epi0(self.conv0(x), ws[:, 0], noise_mode)     # [N, C_out, 2H, 2W]
        return self.epi1(self.conv1(x), ws[:, 1], noise_mode)  # [N, C_out, 2H, 2W]


class StyleGenerator(_Progressive):
    """G(z [N, latent], alpha) -> images [N, 3, R, R]: mapping z -> w, w per layer (mixed in training,
    truncated on request), synthesis from a learned constant."""

    rgb_prefix = "torgb"

    def __init__(self,
        model:      ModelConfig,            # latent_dim (= w size), feature maps, mapping and style settings.
        resolution: int,                    # Output resolution R (power of two >= 4).
        num_classes: int = 0,               # Conditional StyleGAN: not built yet (refused below).
    ):
        if num_classes:
            raise ValueError(f"model.arch=stylegan with labels ({num_classes} classes) is not supported: train "
                             "StyleGAN without data.labels, or a conditional model with model.arch=pggan")
        super().__init__(model, resolution)
        w_dim = model.latent_dim
        self.noise_mode = "random"          # Default for forward(); "const" for reproducible images.
        self.mapping = MappingNetwork(model.latent_dim, w_dim, model.mapping_layers, model.mapping_lr_mul)
        self.register_buffer("w_avg", torch.zeros(w_dim))     # tracked mean w (EMA in training), for truncation
        self.b4 = StyleInputBlock(model.channels(4), w_dim)
        for res in block_resolutions(resolution)[1:]:
            setattr(self, f"b{res}", StyleBlock(model.channels(res // 2), model.channels(res), res, w_dim))
        for res in sorted({resolution // 2, resolution} - {2}):
            setattr(self, f"torgb{res}", EqualizedConv2d(model.channels(res), IMAGE_CHANNELS, 1, gain=1.0))

    @property
    def num_layers(self) -> int:
        return num_style_layers(self.resolution)

    def forward(self, z: torch.Tensor, alpha: float = 1.0, *, psi: float = 1.0, cutoff: int | None = None,
                noise_mode: str | None = None) -> torch.Tensor:
        """In training mode: updates w_avg and mixes styles (model.style_mixing_prob). psi/cutoff: truncation
        (psi 1 = none; cutoff None = model.truncation_cutoff)."""
        if z.ndim != 2 or z.shape[1] != self.model.latent_dim:
            raise ValueError(f"z has shape {tuple(z.shape)}; expected [N, {self.model.latent_dim}] (model.latent_dim)")
        w = self.mapping(z)                                     # [N, W]
        if self.training:
            self.track_w_avg(w)
        ws = w.unsqueeze(1).repeat(1, self.num_layers, 1)       # [N, L, W]
        if self.training and self.model.style_mixing_prob > 0:
            ws = self.mix_for_training(ws, z)
        if psi != 1.0:
            ws = self.truncate(ws, psi, cutoff)
        return self.synthesis(ws, alpha, noise_mode)

    @torch.no_grad()
    def track_w_avg(self, w: torch.Tensor) -> None:
        """w_avg <- lerp(batch mean, w_avg, beta) (official DlatentAvg)."""
        self.w_avg.copy_(torch.lerp(w.detach().float().mean(dim=0), self.w_avg, self.model.w_avg_beta))

    def mix_for_training(self, ws: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Style mixing regularisation: with probability model.style_mixing_prob, the layers from a random
        crossover in 1..L-1 on take the w of a second latent (one crossover per minibatch, as the official code)."""
        L = ws.shape[1]
        if L < 2 or float(torch.rand(())) >= self.model.style_mixing_prob:
            return ws
        crossover = int(torch.randint(1, L, ()))
        w2 = self.mapping(torch.randn_like(z))                  # [N, W]
        return torch.cat([ws[:, :crossover], w2.unsqueeze(1).expand(-1, L - crossover, -1)], dim=1)  # [N, L, W]

    def truncate(self, ws: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
        """w' = w_avg + psi * (w - w_avg) on layers < cutoff (None: model.truncation_cutoff; 0: every layer)."""
        cutoff = self.model.truncation_cutoff if cutoff is None else int(cutoff)
        if cutoff < 0:
            raise ValueError(f"truncation cutoff {cutoff}: must be >= 0 (0 = every layer)")
        L = ws.shape[1]
        layers = torch.arange(L, device=ws.device)
        coef = torch.where(layers < (cutoff or L), float(psi), 1.0).to(ws.dtype).reshape(1, L, 1)   # [1, L, 1]
        return torch.lerp(self.w_avg.to(ws.dtype).reshape(1, 1, -1), ws, coef)                     # [N, L, W]

    def mix(self, w_dst: torch.Tensor, w_src: torch.Tensor, layers: Sequence[int] | range) -> torch.Tensor:
        """Per-layer w for a style-mix grid: w_src on `layers`, w_dst elsewhere ([N, W] each -> [N, L, W])."""
        ws = w_dst.unsqueeze(1).repeat(1, self.num_layers, 1)   # [N, L, W]
        idx = list(layers)
        ws[:, idx] = w_src.unsqueeze(1).expand(-1, len(idx), -1).to(ws.dtype)
        return ws

    def synthesis(self, ws: torch.Tensor, alpha: float = 1.0, noise_mode: str | None = None) -> torch.Tensor:
        """Images from explicit per-layer w: ws [N, L, W] (L = num_layers) -> [N, 3, R, R]."""
        alpha = check_alpha(alpha)
        noise_mode = check_noise_mode(noise_mode or self.noise_mode)
        L, W = self.num_layers, self.model.latent_dim
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (L, W):
            raise ValueError(f"ws has shape {tuple(ws.shape)}; expected [N, {L}, {W}] (one w per style layer)")
        R = self.resolution
        x = self.b4(ws[:, 0:2], noise_mode)                     # [N, C4, 4, 4]
        for res in block_resolutions(R)[1:-1]:
            i = num_style_layers(res) - 2
            x = self.block(res)(x, ws[:, i:i + 2], noise_mode)  # [N, C_res, res, res]
        if R == 4:
            return self.rgb(4)(x)                               # [N, 3, 4, 4]
        # Both branches always run (old one weighted 0 at alpha=1) so every parameter gets a gradient.
        old = upsample2x(self.rgb(R // 2)(x))                   # [N, 3, R, R]
        new = self.rgb(R)(self.block(R)(x, ws[:, L - 2:], noise_mode))  # [N, 3, R, R]
        return torch.lerp(old, new, alpha)


# ----------------------------------------------------------------------------------------------------------------
# Discriminator: PGGAN's, with the blur before each down-sampling (same parameters, same state dict).

class BlurDiscriminatorBlock(DiscriminatorBlock):
    """b{R} of StyleGAN's D: conv 3x3, blur, conv 3x3, 2x2 average pool (official Conv1_down)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels)
        self.blur = Blur(in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.blur(self.conv0(x)))                # [N, C_out, H, W]
        return self.down(x)                                     # [N, C_out, H/2, W/2]


class StyleDiscriminator(Discriminator):
    """PGGAN's Discriminator with blurred down-sampling; its state dict is a Discriminator's."""

    def __init__(self, model: ModelConfig, resolution: int, num_classes: int = 0):
        super().__init__(model, resolution, num_classes)
        for res in block_resolutions(resolution)[1:]:
            old = self.block(res)
            new = BlurDiscriminatorBlock(old.conv0.in_channels, old.conv1.out_channels)
            new.load_state_dict(old.state_dict())
            setattr(self, f"b{res}", new)
