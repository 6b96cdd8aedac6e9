"""MS-SSIM over consecutive image pairs, the PGGAN paper's diversity metric (tensorflow/models msssim algorithm)."""

from __future__ import annotations

import numpy as np

from pggan.metrics.inputs import check_images

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, finest scale first (sum 1.0001, as published).
FILTER_SIZE = 11  # Gaussian window side, shrunk to the image side at small scales ...
FILTER_SIGMA = 1.5  # ... with sigma shrunk in proportion.
K1, K2 = 0.01, 0.03  # SSIM stabilizers, relative to MAX_VAL.
MAX_VAL = 255.0  # Dynamic range of uint8 images.
CHUNK_BYTES = 64 << 20  # Bound on the float64 temporaries of one chunk of pairs.


def ms_ssim(images: np.ndarray) -> float:
    """Mean MS-SSIM over the pairs (0, 1), (2, 3), ... of a uint8 [N, H, W, 3] batch; lower means more varied.

    Follows the official ms_ssim.py: 'VALID' filtering with an 11x11 Gaussian window (sigma 1.5) that shrinks
    with the image at coarse scales, 2x2 box downsampling, SSIM and contrast clipped at 0 per scale.
    Small images: 5 scales need a side of 16 (the coarsest scale is then 1x1, as in the official code); a side
    below 16 uses num_scales(side) = floor(log2(side)) + 1 scales (4 at 8x8, 3 at 4x4) with the first weights
    renormalized to sum to 1 (see scale_weights). Odd sides lose their last row/column when downsampled.
    With an odd N the last image is left out.
    """
    check_images(images, "images")
    first, second = images[0:-1:2], images[1::2]  # [P, H, W, 3] each, P = N // 2
    weights = scale_weights(num_scales(min(images.shape[1], images.shape[2])))
    per_pair = images.shape[1] * images.shape[2] * 3 * 8 * 12  # float64 bytes of the temporaries of one pair
    chunk = max(1, CHUNK_BYTES // per_pair)
    scores = [_ms_ssim_pairs(first[i : i + chunk], second[i : i + chunk], weights) for i in range(0, len(first), chunk)]
    return float(np.mean(np.concatenate(scores)))


def num_scales(side: int) -> int:
    """Scales used for images of this (smaller) side: 5, or as many 2x halvings as reach a 1-pixel image."""
    return min(len(WEIGHTS), int(side).bit_length())  # bit_length = floor(log2(side)) + 1


def scale_weights(scales: int) -> np.ndarray:
    """The published weights for 5 scales; for fewer, the first `scales` weights renormalized to sum to 1."""
    weights = np.asarray(WEIGHTS[:scales], np.float64)
    return weights if scales == len(WEIGHTS) else weights / weights.sum()


def gaussian_window(size: int, sigma: float) -> np.ndarray:
    """1-D normalized Gaussian of `size` taps; its outer product is MATLAB's fspecial('gaussian') window."""
    x = np.arange(size) - (size - 1) / 2.0  # even sizes are centred between taps, as in fspecial
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _valid_filter(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """'VALID' separable filtering of [P, H, W, C] with `window` on H then W -> [P, H - s + 1, W - s + 1, C]."""
    size = len(window)
    rows = x.shape[1] - size + 1
    out = sum(window[k] * x[:, k : k + rows] for k in range(size))
    cols = x.shape[2] - size + 1
    return sum(window[k] * out[:, :, k : k + cols] for k in range(size))


def _ssim_and_cs(im1: np.ndarray, im2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair mean SSIM and mean contrast-structure term at one scale: float64 [P, H, W, 3] -> ([P], [P])."""
    size = min(FILTER_SIZE, im1.shape[1], im1.shape[2])
    window = gaussian_window(size, size * FILTER_SIGMA / FILTER_SIZE)
    mu1, mu2 = _valid_filter(im1, window), _valid_filter(im2, window)  # [P, h, w, 3]
    mu11, mu22, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma11 = _valid_filter(im1 * im1, window) - mu11
    sigma22 = _valid_filter(im2 * im2, window) - mu22
    sigma12 = _valid_filter(im1 * im2, window) - mu12
    c1, c2 = (K1 * MAX_VAL) ** 2, (K2 * MAX_VAL) ** 2
    v1 = 2.0 * sigma12 + c2
    v2 = sigma11 + sigma22 + c2
    ssim = np.mean((2.0 * mu12 + c1) * v1 / ((mu11 + mu22 + c1) * v2), axis=(1, 2, 3))
    cs = np.mean(v1 / v2, axis=(1, 2, 3))
    return ssim, cs


def _box_downsample(x: np.ndarray) -> np.ndarray:
    """2x2 box average: [P, H, W, C] -> [P, H // 2, W // 2, C] (an odd last row/column is dropped)."""
    x = x[:, : x.shape[1] // 2 * 2, : x.shape[2] // 2 * 2]
    return (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]) * 0.25


def _ms_ssim_pairs(img1: np.ndarray, img2: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """MS-SSIM of each pair (img1[i], img2[i]) of uint8 [P, H, W, 3] images -> float64 [P]."""
    im1, im2 = img1.astype(np.float64), img2.astype(np.float64)
    ssims, css = [], []
    for scale in range(len(weights)):
        if scale:
            im1, im2 = _box_downsample(im1), _box_downsample(im2)
        ssim, cs = _ssim_and_cs(im1, im2)
        ssims.append(ssim)
        css.append(cs)
    ssims = np.clip(np.asarray(ssims), 0.0, None)  # [S, P]; negative values would give NaN powers
    css = np.clip(np.asarray(css), 0.0, None)
    return np.prod(css[:-1] ** weights[:-1, None], axis=0) * ssims[-1] ** weights[-1]
