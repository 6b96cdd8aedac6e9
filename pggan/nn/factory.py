"""The networks of a ModelConfig by `model.arch` (pggan | stylegan), built at a resolution; `net.grown()` grows\nany of them to the next."""
from __future__ import annotations

import torch

from pggan.config import ModelConfig
from pggan.nn.networks import Discriminator, Generator
from pggan.nn.stylegan import StyleDiscriminator, StyleGenerator

GENERATORS: dict[str, type[Generator] | type[StyleGenerator]] = {"pggan": Generator, "stylegan": StyleGenerator}
DISCRIMINATORS: dict[str, type[Discriminator]] = {"pggan": Discriminator, "stylegan": StyleDiscriminator}


def _pick(table: dict[str, type], model: ModelConfig) -> type:
    try:
        return table[model.arch]
    except KeyError:
        raise ValueError(f"model.arch={model.arch!r}: expected one of {', '.join(table)}") from None


def generator_class(model: ModelConfig) -> type[Generator] | type[StyleGenerator]:
    """The G class of `model.arch` (e.g. for its classes_in_state_dict)."""
    return _pick(GENERATORS, model)


def make_generator(model: ModelConfig, resolution: int, num_classes: int = 0) -> Generator | StyleGenerator:
    """G for `model.arch` at `resolution` (fresh weights from the current torch RNG); conditional on num_classes
    classes if > 0."""
    return generator_class(model)(model, resolution, num_classes)


def make_discriminator(model: ModelConfig, resolution: int, num_classes: int = 0) -> Discriminator:
    """D for `model.arch` at `resolution` (PGGAN's; with blurred down-sampling for stylegan); with num_classes
    class logits (AC-GAN) if > 0. Growing: `D.grown()`."""
    return _pick(DISCRIMINATORS, model)(model, resolution, num_classes)


def is_style_generator(G: torch.nn.Module) -> bool:
    """Whether G takes StyleGAN's generation options (psi, cutoff, noise_mode, synthesis from per-layer w)."""
    return isinstance(G, StyleGenerator)
