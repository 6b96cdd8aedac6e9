"""PGGAN Generator and Discriminator (paper Table 2): built for a resolution, grown from a smaller one, fade-in.

With num_classes > 0 both are conditional as in the official code's label support: G joins a learned label
embedding to the latent; D outputs a score and one logit per class (an auxiliary classifier, AC-GAN)."""
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


def check_num_classes(num_classes: int) -> int:
    if not (isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes >= 0):
        raise ValueError(f"num_classes={num_classes!r}: must be an int >= 0 (0 = unconditional)")
    return num_classes


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


class LabelEmbedding(torch.nn.Module):
    """A learned vector per class: labels [N] (class indices) -> [N, dim].

    The same as an equalized-LR dense layer on the one-hot label (weights N(0, 1), run-time scale
    1/sqrt(fan_in), and a one-hot has one active input: scale 1), as StyleGAN's official label embedding.
    """

    def __init__(self,
        num_classes: int,                   # Classes (rows of the table).
        dim:         int,                   # Embedding size (the latent size, so both weigh alike in the norm).
    ):
        super().__init__()
        self.num_classes = num_classes
        self.dim = dim
        self.weight = torch.nn.Parameter(torch.randn(num_classes, dim))

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.embedding(labels, self.weight)   # [N, dim]

    def summary_label(self) -> str:
        return "Label embedding"

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, dim={self.dim}"


class GeneratorInputBlock(torch.nn.Module):
    """b4 of G: pixel-normalized latent (joined to the label embedding when conditional) -> 4x4 features ->
    conv 3x3."""

    def __init__(self, latent_dim: int, channels: int, num_classes: int = 0):
        super().__init__()
        # Conditional: the official code concatenates the label to the latent before the first pixel norm.
        self.embed = LabelEmbedding(num_classes, latent_dim) if num_classes else None
        self.norm = PixelNorm()
        self.dense = DenseTo4x4(latent_dim * (2 if num_classes else 1), channels)
        self.conv = EqualizedConv2d(channels, channels, 3, activation="lrelu")

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels).to(z.dtype)], dim=1)  # [N, 2 * latent]
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

    def __init__(self, model: ModelConfig, resolution: int, num_classes: int = 0):
        super().__init__()
        self.model = model
        self.resolution = check_resolution(resolution)
        self.num_classes = check_num_classes(num_classes)

    @staticmethod
    def classes_in_state_dict(state_dict: Mapping[str, torch.Tensor]) -> int | None:
        """The num_classes a state dict was saved with (0 = unconditional); None if it does not tell. Subclasses
        read it from their label layers."""
        return None

    def block(self, res: int) -> torch.nn.Module:
        return getattr(self, f"b{res}")

    def rgb(self, res: int) -> torch.nn.Module:
        return getattr(self, f"{self.rgb_prefix}{res}")

    def fade_in_layer_names(self) -> list[str]:
        """Modules used only while fading in (the R/2 RGB layer); not part of the paper's Table 2 count."""
        return [f"{self.rgb_prefix}{self.resolution // 2}"] if self.resolution > 4 else []

    def grown(self) -> "_Progressive":
        """The same kind of network at twice the resolution with all of this one's trained layers (label embedding
        or class logits, and buffers such as StyleGAN's w_avg, included); the new block starts fresh."""
        param = next(self.parameters())
        new = type(self)(self.model, self.resolution * 2, self.num_classes)
        new = new.to(device=param.device, dtype=param.dtype)
        new.load_grown_state_dict(self.state_dict())
        return new

    def load_grown_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, list[str]]:
        """Copy the weights of a smaller (or same-size) network of the same config; the rest stays fresh.

        Returns {"copied": keys loaded, "fresh": keys left at init, "dropped": old fade-in RGB keys not needed}.
        """
        own = self.state_dict()
        kind = type(self).__name__
        theirs = self.classes_in_state_dict(state_dict)
        if theirs is not None and theirs != self.num_classes:
            said = lambda k: f"conditional on {k} classes" if k else "unconditional"  # noqa: E731
            raise ValueError(f"{kind}: the state dict is {said(theirs)}, this network {said(self.num_classes)}; "
                             f"build it with num_classes={theirs} (the checkpoint's class names)")
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
    """G(z [N, latent], alpha, labels [N] when conditional) -> images [N, 3, R, R] (linear output, roughly
    [-1, 1])."""

    rgb_prefix = "torgb"

    def __init__(self,
        model:       ModelConfig,           # latent_dim and the feature-map schedule.
        resolution:  int,                   # Output resolution R (power of two >= 4).
        num_classes: int = 0,               # Classes to condition on; 0 = unconditional (no label layers).
    ):
        super().__init__(model, resolution, num_classes)
        self.b4 = GeneratorInputBlock(model.latent_dim, model.channels(4), num_classes)
        for res in block_resolutions(resolution)[1:]:
            setattr(self, f"b{res}", GeneratorBlock(model.channels(res // 2), model.channels(res)))
        for res in sorted({resolution // 2, resolution} - {2}):
            setattr(self, f"torgb{res}", EqualizedConv2d(model.channels(res), IMAGE_CHANNELS, 1, gain=1.0))

    @staticmethod
    def classes_in_state_dict(state_dict: Mapping[str, torch.Tensor]) -> int | None:
        if "b4.embed.weight" in state_dict:
            return int(state_dict["b4.embed.weight"].shape[0])
        return 0 if "b4.dense.weight" in state_dict else None

    def forward(self, z: torch.Tensor, alpha: float = 1.0, labels: torch.Tensor | None = None) -> torch.Tensor:
        alpha = check_alpha(alpha)
        if z.ndim != 2 or z.shape[1] != self.model.latent_dim:
            raise ValueError(f"z has shape {tuple(z.shape)}; expected [N, {self.model.latent_dim}] (model.latent_dim)")
        check_label_input(labels, z.shape[0], self.num_classes, "generator")
        R = self.resolution
        x = self.b4(z, labels)                                  # [N, C4, 4, 4]
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
    """b4 of D: minibatch stddev, conv 3x3, conv 4x4 (valid), fully-connected -> one score (and, when
    conditional, one logit per class)."""

    def __init__(self, channels: int, dense_channels: int, mbstd_group_size: int, num_classes: int = 0):
        super().__init__()
        # As in the official code, a group size of 1 disables the layer (no extra feature map).
        self.mbstd = MinibatchStddev(mbstd_group_size) if mbstd_group_size > 1 else None
        extra = 1 if self.mbstd is not None else 0
        self.conv = EqualizedConv2d(channels + extra, channels, 3, activation="lrelu")
        self.conv4x4 = EqualizedConv2d(channels, dense_channels, 4, activation="lrelu", padding=0)
        self.out = EqualizedLinear(dense_channels, 1 + num_classes, gain=1.0)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd is not None:
            x = self.mbstd(x)                                   # [N, C+1, 4, 4]
        x = self.conv(x)                                        # [N, C, 4, 4]
        x = self.conv4x4(x).flatten(1)                          # [N, C_dense]
        if self.num_classes:
            return self.out(x)                                  # [N, 1 + K]: score, class logits
        return self.out(x).squeeze(1)                           # [N]


class Discriminator(_Progressive):
    """D(images [N, 3, R, R], alpha) -> scores [N]; when conditional [N, 1 + K]: the score, then K class logits
    (split_d_output separates them)."""

    rgb_prefix = "fromrgb"

    def __init__(self,
        model:       ModelConfig,           # Feature-map schedule and minibatch-stddev group size.
        resolution:  int,                   # Input resolution R (power of two >= 4).
        num_classes: int = 0,               # Class logits besides the score (AC-GAN); 0 = unconditional.
    ):
        super().__init__(model, resolution, num_classes)
        # The final dense width is nf(0) = min(fmap_base, fmap_max) in the official code (512 in Table 2).
        self.b4 = DiscriminatorOutputBlock(model.channels(4), model.channels(2), model.mbstd_group_size,
                                           num_classes)
        for res in block_resolutions(resolution)[1:]:
            setattr(self, f"b{res}", DiscriminatorBlock(model.channels(res), model.channels(res // 2)))
        for res in sorted({resolution // 2, resolution} - {2}):
            setattr(self, f"fromrgb{res}", EqualizedConv2d(IMAGE_CHANNELS, model.channels(res), 1,
                                                           activation="lrelu"))

    @staticmethod
    def classes_in_state_dict(state_dict: Mapping[str, torch.Tensor]) -> int | None:
        out = state_dict.get("b4.out.weight")
        return None if out is None else int(out.shape[0]) - 1

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
        return self.b4(h)                                       # [N] or [N, 1 + K]


def split_d_output(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """D's output -> (scores [N], class logits [N, K], or None for an unconditional D's [N])."""
    if out.ndim == 1:
        return out, None
    return out[:, 0], out[:, 1:]                                # [N], [N, K]


def check_label_input(labels: torch.Tensor | None, n: int, num_classes: int, what: str) -> None:
    """Shape and type of the labels given to a network (their values are checked where users give them:
    pggan.labels); no device sync, so it costs nothing per step."""
    if not num_classes:
        if labels is not None:
            raise ValueError(f"labels were given to an unconditional {what} (num_classes=0); train with "
                             "data.labels=folders to condition on a class, or pass no labels")
        return
    if labels is None:
        raise ValueError(f"this {what} is conditional on {num_classes} classes: pass labels (class indices [N])")
    if labels.ndim != 1 or labels.shape[0] != n or labels.dtype != torch.int64:
        raise ValueError(f"labels have shape {tuple(labels.shape)} and dtype {labels.dtype}; expected class "
                         f"indices [{n}] as int64 (0..{num_classes - 1})")
