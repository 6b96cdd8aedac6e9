"""PGGAN networks and layers (PyTorch only)."""
from pggan.nn.layers import (EqualizedConv2d, EqualizedLinear, MinibatchStddev, PixelNorm, downsample2x,
                             upsample2x)
from pggan.nn.networks import Discriminator, Generator, grow_discriminator, grow_generator

__all__ = ["EqualizedConv2d", "EqualizedLinear", "MinibatchStddev", "PixelNorm", "downsample2x", "upsample2x",
           "Generator", "Discriminator", "grow_generator", "grow_discriminator"]
from pggan.nn.factory import grow, make_discriminator, make_generator  # noqa: E402  (by model.arch)
from pggan.nn.stylegan import StyleDiscriminator, StyleGenerator  # noqa: E402

__all__ += ["make_generator", "make_discriminator", "grow", "StyleGenerator", "StyleDiscriminator"]
