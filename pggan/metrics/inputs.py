"""Input checks shared by the image metrics: batches of uint8 RGB images [N, H, W, 3]."""

from __future__ import annotations

import numpy as np


def check_images(images: np.ndarray, name: str, *, min_count: int = 2) -> np.ndarray:
    """Return `images` as an ndarray after checking it is a uint8 [N, H, W, 3] batch of >= min_count images.

    Raises ValueError naming `name`, the offending value and what to do about it.
    """
    if not isinstance(images, np.ndarray):
        raise ValueError(
            f"{name} must be a numpy uint8 array [N, H, W, 3]; got {type(images).__name__}. "
            f"Convert it with np.asarray(...) (and .cpu().numpy() for torch tensors)."
        )
    if images.dtype != np.uint8:
        raise ValueError(
            f"{name} must be uint8 images with values 0..255; got dtype {images.dtype}. "
            f"Convert generator output in [-1, 1] with pggan.imaging.to_uint8 first."
        )
    if images.ndim != 4:
        raise ValueError(
            f"{name} must have shape [N, H, W, 3] (NHWC RGB); got shape {images.shape} ({images.ndim} dims)."
        )
    if images.shape[-1] != 3:
        raise ValueError(
            f"{name} must have 3 colour channels in the last axis (NHWC RGB); got shape {images.shape} "
            f"with {images.shape[-1]} channels. NCHW batches need images.transpose(0, 2, 3, 1); "
            f"grey images need np.repeat(images, 3, axis=-1)."
        )
    if images.shape[1] < 1 or images.shape[2] < 1:
        raise ValueError(f"{name} must have images of at least 1x1 pixels; got shape {images.shape}.")
    if images.shape[0] < min_count:
        raise ValueError(f"{name} must hold at least {min_count} images; got {images.shape[0]} (shape {images.shape}).")
    return images


def check_seed(seed: int) -> int:
    """Return `seed` after checking it is a non-negative integer (what numpy's SeedSequence accepts)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}.")
    return int(seed)
