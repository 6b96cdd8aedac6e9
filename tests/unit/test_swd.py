"""Sliced Wasserstein distance: matches a plain reference of the published algorithm and behaves like a distance."""

from __future__ import annotations

import numpy as np
import pytest

from pggan.metrics import swd
from pggan.metrics.swd import pyramid_level, sliced_wasserstein


def _shapes(seed: int, count: int, size: int) -> np.ndarray:
    """Structured uint8 [count, size, size, 3] images: colour gradients with random rectangles and fine stripes."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, size)
    images = np.empty((count, size, size, 3))
    for i in range(count):
        a, b = rng.uniform(0, 255, (2, 3))
        img = a + (b - a) * ramp[None, :, None] * ramp[:, None, None]  # [size, size, 3] gradient
        for _ in range(4):
            y0, x0 = rng.integers(0, size - 1, 2)
            h, w = rng.integers(1, max(2, size // 2), 2)
            img[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 255, 3)
        stripes = np.sin(ramp * size * rng.uniform(0.5, 2.0))[None, :, None] * 20  # high-frequency detail
        images[i] = img + stripes
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def _gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Circular Gaussian blur of uint8 NHWC images (a box blur's zeros would make 'more blur' non-monotone)."""
    taps = np.arange(-int(np.ceil(3 * sigma)), int(np.ceil(3 * sigma)) + 1)
    weights = np.exp(-(taps**2) / (2 * sigma**2))
    x = images.astype(np.float64)
    for axis in (1, 2):
        x = sum(w * np.roll(x, t, axis=axis) for t, w in zip(taps, weights / weights.sum()))
    return np.rint(x).astype(np.uint8)


def _add_noise(images: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, images.shape)
    return np.clip(np.rint(images + noise), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- plain reference implementation

_KERNEL = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0  # the paper's 5x5 binomial


def _mirror(i: int, n: int) -> int:
    """scipy.ndimage 'mirror' boundary: d c b | a b c d | c b a."""
    if i < 0:
        return -i
    if i >= n:
        return 2 * (n - 1) - i
    return i


def _convolve_mirror(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """5x5 convolution of [N, C, H, W] with mirror padding, one output pixel and one tap at a time."""
    n_rows, n_cols = img.shape[2], img.shape[3]
    out = np.zeros_like(img)
    for y in range(n_rows):
        for x in range(n_cols):
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    out[:, :, y, x] += kernel[dy + 2, dx + 2] * img[:, :, _mirror(y + dy, n_rows), _mirror(x + dx, n_cols)]
    return out


def _reference_pyramid(images: np.ndarray, num_levels: int) -> list[np.ndarray]:
    """Laplacian pyramid as in the official code: G_{i+1} = down(G_i), L_i = G_i - up(G_{i+1}), last = Gaussian."""
    gaussians = [images]
    for _ in range(1, num_levels):
        gaussians.append(_convolve_mirror(gaussians[-1], _KERNEL)[:, :, ::2, ::2])
    levels = []
    for fine, coarse in zip(gaussians[:-1], gaussians[1:]):
        zero_filled = np.zeros_like(fine)
        zero_filled[:, :, ::2, ::2] = coarse
        levels.append(fine - _convolve_mirror(zero_filled, _KERNEL * 4.0))
    return levels + [gaussians[-1]]


def _reference_swd(reals: np.ndarray, fakes: np.ndarray, seed: int) -> list[float]:
    """The published SWD with the module's documented random protocol, written out plainly in float64."""
    side = reals.shape[1]
    num_levels = 1
    while side // 2 ** num_levels >= 16:
        num_levels += 1
    pyramids = [_reference_pyramid(x.transpose(0, 3, 1, 2).astype(np.float64), num_levels) for x in (reals, fakes)]
    result = []
    for level in range(num_levels):
        level_side = pyramids[0][level].shape[2]
        half = min(3, (level_side - 1) // 2)
        rng = np.random.default_rng([seed, level])
        count = reals.shape[0] * 128
        rows = rng.integers(half, level_side - half, count)
        cols = rng.integers(half, level_side - half, count)
        descriptors = []
        for pyramid in pyramids:
            desc = np.stack(
                [
                    pyramid[level][j // 128, :, rows[j] - half : rows[j] + half + 1, cols[j] - half : cols[j] + half + 1]
                    for j in range(count)
                ]
            )  # [count, 3, size, size]
            desc = (desc - desc.mean(axis=(0, 2, 3), keepdims=True)) / desc.std(axis=(0, 2, 3), keepdims=True)
            descriptors.append(desc.reshape(count, -1))
        directions = rng.standard_normal((4, descriptors[0].shape[1], 128))
        repeats = []
        for dirs in directions:
            dirs = dirs / np.sqrt(np.sum(dirs**2, axis=0, keepdims=True))
            proj_a = np.sort(descriptors[0] @ dirs, axis=0)
            proj_b = np.sort(descriptors[1] @ dirs, axis=0)
            repeats.append(np.mean(np.abs(proj_a - proj_b)))
        result.append(float(np.mean(repeats)) * 1e3)
    return result


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("size", [32, 8, 4])
def test_swd_matches_plain_reference_implementation(size: int) -> None:
    reals, fakes = _shapes(0, 3, size), _shapes(1, 3, size)
    result = sliced_wasserstein(reals, fakes, seed=5)
    expected = _reference_swd(reals, fakes, seed=5)
    assert len(result["levels"]) == len(expected) == (2 if size == 32 else 1)
    np.testing.assert_allclose(result["levels"], expected, rtol=1e-4)
    assert result["avg"] == pytest.approx(np.mean(expected), rel=1e-4)


def test_laplacian_pyramid_matches_scipy_mirror_convolution_of_official_code() -> None:
    from scipy import ndimage  # a dev dependency: this check must run, never skip
    images = _shapes(2, 2, 64).transpose(0, 3, 1, 2).astype(np.float32)  # [N, 3, 64, 64]
    kernel = _KERNEL.astype(np.float32)[None, None]
    fine = ndimage.convolve(images, kernel, mode="mirror")[:, :, ::2, ::2]
    coarse = ndimage.convolve(fine, kernel, mode="mirror")[:, :, ::2, ::2]
    zero_filled = np.zeros_like(images)
    zero_filled[:, :, ::2, ::2] = fine
    expected_finest = images - ndimage.convolve(zero_filled, kernel * 4, mode="mirror")
    np.testing.assert_allclose(pyramid_level(images, 0, 3), expected_finest, atol=1e-3)
    np.testing.assert_allclose(pyramid_level(images, 2, 3), coarse, atol=1e-3)


def test_identical_sets_give_zero_at_every_level() -> None:
    images = _shapes(3, 8, 64)
    result = sliced_wasserstein(images, images.copy())
    assert len(result["levels"]) == 3  # 64, 32, 16
    assert result["levels"] == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)


def test_swd_grows_at_every_level_as_fakes_are_blurred_more() -> None:
    reals = _shapes(4, 8, 64)
    results = [sliced_wasserstein(reals, reals)] + [sliced_wasserstein(reals, _gaussian_blur(reals, s)) for s in (0.5, 1, 2)]
    for level in range(3):
        per_level = [r["levels"][level] for r in results]
        assert per_level == sorted(per_level) and len(set(per_level)) == 4, f"level {level}: {per_level}"


def test_swd_grows_at_every_level_as_fakes_are_noised_more() -> None:
    reals = _shapes(5, 8, 64)
    results = [sliced_wasserstein(reals, _add_noise(reals, s)) for s in (0, 4, 16, 48)]
    for level in range(3):
        per_level = [r["levels"][level] for r in results]
        assert per_level == sorted(per_level) and len(set(per_level)) == 4, f"level {level}: {per_level}"


def test_swd_is_deterministic_for_a_seed_and_varies_with_it() -> None:
    reals, fakes = _shapes(6, 4, 32), _shapes(7, 4, 32)
    first = sliced_wasserstein(reals, fakes, seed=3)
    assert sliced_wasserstein(reals, fakes, seed=3) == first
    assert sliced_wasserstein(reals, fakes, seed=4)["levels"] != first["levels"]


def test_swd_does_not_depend_on_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    reals, fakes = _shapes(8, 6, 32), _shapes(9, 6, 32)
    whole = sliced_wasserstein(reals, fakes)
    monkeypatch.setattr(swd, "CHUNK_BYTES", 1 << 12)  # one image per pyramid chunk, one direction per projection
    chunked = sliced_wasserstein(reals, fakes)
    np.testing.assert_allclose(chunked["levels"], whole["levels"], rtol=1e-5)


@pytest.mark.parametrize("size", [4, 8, 16])
def test_small_images_give_one_finite_level(size: int) -> None:
    reals, fakes = _shapes(10, 4, size), _gaussian_blur(_shapes(10, 4, size), 1.0)
    result = sliced_wasserstein(reals, fakes)
    assert len(result["levels"]) == 1
    assert np.isfinite(result["avg"]) and result["avg"] > 0


def test_flat_images_give_finite_distance() -> None:
    flat = np.full((4, 32, 32, 3), 128, np.uint8)  # what an untrained generator can produce
    result = sliced_wasserstein(_shapes(11, 4, 32), flat)
    assert all(np.isfinite(level) and level > 0 for level in result["levels"])


@pytest.mark.parametrize(
    ("reals", "fakes", "seed", "message"),
    [
        (np.zeros((4, 16, 16, 3), np.float32), np.zeros((4, 16, 16, 3), np.uint8), 0, "float32"),
        (np.zeros((4, 16, 16, 1), np.uint8), np.zeros((4, 16, 16, 1), np.uint8), 0, r"\(4, 16, 16, 1\)"),
        (np.zeros((4, 3, 16, 16), np.uint8), np.zeros((4, 3, 16, 16), np.uint8), 0, "16 channels"),
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16, 3), np.uint8), 0, "3 dims"),
        (np.zeros((1, 16, 16, 3), np.uint8), np.zeros((1, 16, 16, 3), np.uint8), 0, "at least 2 images; got 1"),
        (np.zeros((4, 16, 16, 3), np.uint8), np.zeros((5, 16, 16, 3), np.uint8), 0, r"\(5, 16, 16, 3\)"),
        (np.zeros((4, 16, 16, 3), np.uint8), np.zeros((4, 16, 16, 3), np.uint8), -1, "seed .* got -1"),
        ([[[[0, 0, 0]]]], np.zeros((1, 1, 1, 3), np.uint8), 0, "got list"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_problem(reals, fakes, seed: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sliced_wasserstein(reals, fakes, seed=seed)
