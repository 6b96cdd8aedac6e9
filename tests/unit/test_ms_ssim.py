"""MS-SSIM: matches a plain reference of the published algorithm, orders similarity sensibly, works at 4x4."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from pggan.metrics import ms_ssim
from pggan.metrics.ms_ssim import WEIGHTS, num_scales, scale_weights

ms_ssim_module = importlib.import_module("pggan.metrics.ms_ssim")  # pggan.metrics.ms_ssim itself is the function


def _textures(seed: int, count: int, size: int, blur: float = 3.0) -> np.ndarray:
    """Smooth periodic colour textures, uint8 [count, size, size, 3]: white noise low-passed in the Fourier domain."""
    noise = np.random.default_rng(seed).normal(size=(count, size, size, 3))
    freq = np.fft.fftfreq(size)
    falloff = np.exp(-(freq[:, None] ** 2 + freq[None, :] ** 2) * (2 * np.pi * blur) ** 2 / 2)  # Gaussian blur
    smooth = np.fft.ifft2(np.fft.fft2(noise, axes=(1, 2)) * falloff[None, :, :, None], axes=(1, 2)).real
    return np.clip(np.rint(128 + 50 * smooth / smooth.std()), 0, 255).astype(np.uint8)


def _interleave(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """[P, H, W, 3] x 2 -> [2P, H, W, 3] ordered first[0], second[0], first[1], ... (the pairs ms_ssim scores)."""
    return np.stack([first, second], axis=1).reshape((-1,) + first.shape[1:])


# ---------------------------------------------------------------------------- plain reference implementation


def _fspecial_gauss(size: int, sigma: float) -> np.ndarray:
    """MATLAB fspecial('gaussian', size, sigma), as in the official ms_ssim.py."""
    radius = size // 2
    offset, start, stop = 0.0, -radius, radius + 1
    if size % 2 == 0:
        offset, stop = 0.5, stop - 1
    y, x = np.mgrid[offset + start : stop, offset + start : stop]
    g = np.exp(-((x**2 + y**2) / (2.0 * sigma**2)))
    return g / g.sum()


def _reference_ssim_cs(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean SSIM and contrast-structure of one float64 [H, W, 3] pair, one 'VALID' window position at a time."""
    size = min(11, a.shape[0], a.shape[1])
    window = _fspecial_gauss(size, size * 1.5 / 11)[:, :, None]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim_values, cs_values = [], []
    for y in range(a.shape[0] - size + 1):
        for x in range(a.shape[1] - size + 1):
            pa, pb = a[y : y + size, x : x + size], b[y : y + size, x : x + size]
            mu_a, mu_b = (window * pa).sum(axis=(0, 1)), (window * pb).sum(axis=(0, 1))  # [3]
            var_a = (window * pa * pa).sum(axis=(0, 1)) - mu_a**2
            var_b = (window * pb * pb).sum(axis=(0, 1)) - mu_b**2
            cov = (window * pa * pb).sum(axis=(0, 1)) - mu_a * mu_b
            cs = (2 * cov + c2) / (var_a + var_b + c2)
            ssim_values.extend((2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1) * cs)
            cs_values.extend(cs)
    return float(np.mean(ssim_values)), float(np.mean(cs_values))


def _reference_ms_ssim(images: np.ndarray) -> float:
    """Published MS-SSIM, mean over pairs (0, 1), (2, 3), ...; fewer scales (renormalized weights) below 16 px."""
    side = min(images.shape[1], images.shape[2])
    scales = 1
    while scales < 5 and side >= 2**scales:
        scales += 1
    weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333][:scales])
    if scales < 5:
        weights = weights / weights.sum()
    scores = []
    for pair in range(images.shape[0] // 2):
        a, b = images[2 * pair].astype(np.float64), images[2 * pair + 1].astype(np.float64)
        ssims, css = [], []
        for scale in range(scales):
            if scale:
                rows, cols = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
                a = (a[0:rows:2, 0:cols:2] + a[1:rows:2, 0:cols:2] + a[0:rows:2, 1:cols:2] + a[1:rows:2, 1:cols:2]) / 4
                b = (b[0:rows:2, 0:cols:2] + b[1:rows:2, 0:cols:2] + b[0:rows:2, 1:cols:2] + b[1:rows:2, 1:cols:2]) / 4
            ssim, cs = _reference_ssim_cs(a, b)
            ssims.append(max(ssim, 0.0))
            css.append(max(cs, 0.0))
        score = ssims[-1] ** weights[-1]
        for cs, weight in zip(css[:-1], weights[:-1]):
            score *= cs**weight
        scores.append(score)
    return float(np.mean(scores))


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("size", [32, 12, 4])
def test_ms_ssim_matches_plain_reference_implementation(size: int) -> None:
    base = _textures(0, 3, size, blur=1.0)
    noisy = np.clip(base + np.random.default_rng(1).normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    images = _interleave(base, noisy)
    assert ms_ssim(images) == pytest.approx(_reference_ms_ssim(images), rel=1e-9, abs=1e-12)


def test_identical_pairs_score_one() -> None:
    images = _textures(2, 4, 32)
    assert ms_ssim(_interleave(images, images)) == pytest.approx(1.0, abs=1e-12)


def test_independent_noise_pairs_score_near_zero() -> None:
    noise = np.random.default_rng(3).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    # Not exactly 0: box averaging shrinks the noise variance until the K2 stabilizer dominates the coarse scales.
    assert 0.0 <= ms_ssim(noise) < 0.15


def test_smaller_shift_scores_higher() -> None:
    base = _textures(4, 4, 64)
    scores = [ms_ssim(_interleave(base, np.roll(base, shift, axis=(1, 2)))) for shift in (0, 1, 2, 4, 8)]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 5, scores


@pytest.mark.parametrize("size", [4, 8, 16])
def test_small_images_give_a_score_in_unit_range(size: int) -> None:
    images = _textures(5, 6, size, blur=0.5)
    score = ms_ssim(images)
    assert 0.0 <= score < 1.0
    assert ms_ssim(_interleave(images, images)) == pytest.approx(1.0)


def test_scales_shrink_below_16_pixels_with_weights_renormalized() -> None:
    assert [num_scales(side) for side in (1, 4, 8, 15, 16, 128)] == [1, 3, 4, 4, 5, 5]
    assert list(scale_weights(5)) == list(WEIGHTS)  # the published weights, untouched
    assert scale_weights(3).sum() == pytest.approx(1.0)


def test_odd_image_count_leaves_the_last_image_out() -> None:
    images = _textures(6, 5, 32)
    assert ms_ssim(images) == ms_ssim(images[:4])


def test_ms_ssim_does_not_depend_on_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    images = _textures(7, 10, 32, blur=1.0)
    whole = ms_ssim(images)
    monkeypatch.setattr(ms_ssim_module, "CHUNK_BYTES", 1)  # one pair per chunk
    assert ms_ssim(images) == pytest.approx(whole, rel=1e-12)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((4, 16, 16, 3), np.float64), "float64"),
        (np.zeros((4, 16, 16, 4), np.uint8), r"4 channels"),
        (np.zeros((16, 16, 3), np.uint8), r"\(16, 16, 3\)"),
        (np.zeros((1, 16, 16, 3), np.uint8), "at least 2 images; got 1"),
        (np.zeros((4, 0, 16, 3), np.uint8), "at least 1x1"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_problem(images: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ms_ssim(images)
