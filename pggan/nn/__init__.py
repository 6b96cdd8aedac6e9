"""PGGAN and StyleGAN networks and layers (PyTorch only). Build by `model.arch` with make_generator /
make_discriminator; `net.grown()` is the same network at twice the resolution."""
from pggan.nn.factory import is_style_generator, make_discriminator, make_generator
from pggan.nn.layers import (EqualizedConv2d, EqualizedLinear, MinibatchStddev, PixelNorm, downsample2x,
                             upsample2x)
from pggan.nn.networks import Discriminator, Generator
from pggan.nn.stylegan import StyleDiscriminator, StyleGenerator

__all__ = ["EqualizedConv2d", "EqualizedLinear", "MinibatchStddev", "PixelNorm", "downsample2x", "upsample2x",
           "Generator", "Discriminator", "StyleGenerator", "StyleDiscriminator", "make_generator",
           "make_discriminator", "is_style_generator"]
