"""The networks of a ModelConfig by `model.arch` (pggan | stylegan): build at a resolution, grow to the next."""
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


def make_generator(model: ModelConfig, resolution: int) -> Generator | StyleGenerator:
    """G for `model.arch` at `resolution` (fresh weights from the current torch RNG)."""
    return _pick(GENERATORS, model)(model, resolution)


def make_discriminator(model: ModelConfig, resolution: int) -> Discriminator:
    """D for `model.arch` at `resolution` (PGGAN's; with blurred down-sampling for stylegan)."""
    return _pick(DISCRIMINATORS, model)(model, resolution)


def grow(old: torch.nn.Module) -> torch.nn.Module:
    """The same kind of network at twice `old`'s resolution with all of old's trained layers (and buffers, e.g.
    StyleGAN's w_avg); the new block starts fresh. Works for every G and D above."""
    param = next(old.parameters())
    new = type(old)(old.model, old.resolution * 2).to(device=param.device, dtype=param.dtype)
    new.load_grown_state_dict(old.state_dict())
    return new


def is_style_generator(G: torch.nn.Module) -> bool:
    """Whether G takes StyleGAN's generation options (psi, cutoff, noise_mode, synthesis from per-layer w)."""
    return isinstance(G, StyleGenerator)
