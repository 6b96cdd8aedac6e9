"""Sliced Wasserstein distance between Laplacian-pyramid patch sets of two image sets (the PGGAN paper's SWD)."""

from __future__ import annotations

import numpy as np

from pggan.metrics.inputs import check_images, check_seed

# The paper's settings (tkarras/progressive_growing_of_gans, metrics/sliced_wasserstein.py).
PATCH_SIZE = 7  # Patch side where the level fits it: 3 * 7 * 7 = 147-d descriptors.
PATCHES_PER_IMAGE = 128  # Random patches drawn from every image at every level.
DIR_REPEATS = 4  # Independent sets of random directions ...
DIRS_PER_REPEAT = 128  # ... of this many unit directions each.
MIN_LEVEL_RES = 16  # The pyramid stops at the first level below this side; 16x16 is the Gaussian remainder.
MIN_STD = 1e-3  # Grey levels; descriptor channels flatter than this are only centred (no division by ~0).
# Bound on each temporary array; memory is dominated by the descriptor sets. At 8192 images it gives 32 directions
# per projection product, about 1.5x faster on BLAS than 16.
CHUNK_BYTES = 128 << 20

_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], np.float32) / 16.0  # 5x5 kernel = outer(_BINOMIAL, _BINOMIAL).


def sliced_wasserstein(reals: np.ndarray, fakes: np.ndarray, *, seed: int = 0) -> dict:
    """SWD x 1e3 per Laplacian level between two uint8 [N, H, W, 3] image sets of the same shape.

    Returns {"levels": [finest, ..., coarsest], "avg": mean of levels}. Levels run from the full resolution down
    to the last side >= 16 (that level is the Gaussian remainder); images smaller than 16 px give one level,
    the images themselves. Patches are 7x7, or the largest odd size that fits a smaller level (3x3 at 4x4).

    Random protocol (fixed, so results are reproducible and independent of chunking), per level index l:
    rng = np.random.default_rng([seed, l]); patch rows, then columns, each rng.integers(h, side - h, N * 128)
    with h the patch half-width (patch j belongs to image j // 128); then directions
    rng.standard_normal((4, D, 128)) normalized over D. Both sets use the same patch positions (the official
    code draws them separately; both converge to the same value as N grows, shared positions with less sampling
    noise, and SWD(x, x) = 0 exactly). A colour channel whose descriptors have std < MIN_STD (flat images) is
    centred but not scaled, where the official code would divide by zero.
    Memory: one level's descriptors for both sets, 2 * N * 128 * 147 * 4 bytes (2.5 GB for N = 16384), plus
    temporaries bounded by CHUNK_BYTES.
    """
    check_images(reals, "reals")
    check_images(fakes, "fakes")
    if reals.shape != fakes.shape:
        raise ValueError(
            f"reals and fakes must have the same shape [N, H, W, 3]; got {reals.shape} and {fakes.shape}. "
            f"Use as many fake images as real ones, at the same resolution."
        )
    seed = check_seed(seed)
    num_levels = pyramid_levels(min(reals.shape[1], reals.shape[2]))
    levels = [float(_level_distance(reals, fakes, level, num_levels, seed) * 1e3) for level in range(num_levels)]
    return {"levels": levels, "avg": float(np.mean(levels))}


def pyramid_levels(side: int) -> int:
    """Number of Laplacian levels for images of this (smaller) side: sides >= 16, halving; at least 1."""
    count = 0
    while side >= MIN_LEVEL_RES:
        count += 1
        side //= 2
    return max(count, 1)


def patch_half_width(side: int) -> int:
    """Half-width h of the patches at a level of this side: 7x7 patches, or the largest 2h+1 <= side."""
    return min(PATCH_SIZE // 2, (side - 1) // 2)


# ---------------------------------------------------------------------------- Laplacian pyramid


def _blur_axis(x: np.ndarray, axis: int, step: int = 1, gain: float = 1.0) -> np.ndarray:
    """Filter float32 `x` with the 5-tap binomial along `axis` (mirror padding), keeping every `step`-th output."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (2, 2)
    padded = np.pad(x, pad, mode="reflect")  # numpy "reflect" == scipy.ndimage "mirror": d c b | a b c d | c b a
    size = x.shape[axis]
    out = None
    for tap, weight in enumerate(_BINOMIAL * np.float32(gain)):
        index = [slice(None)] * x.ndim
        index[axis] = slice(tap, tap + size, step)
        term = padded[tuple(index)] * weight
        out = term if out is None else out + term
    return out


def pyr_down(x: np.ndarray) -> np.ndarray:
    """Blur then keep every other row and column: float32 [N, C, H, W] -> [N, C, ceil(H/2), ceil(W/2)]."""
    return _blur_axis(_blur_axis(x, 2, step=2), 3, step=2)


def pyr_up(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-insert then blur with 4x the kernel: float32 [N, C, h, w] -> [N, C, H, W] = `shape` (H <= 2h)."""
    up = np.zeros(x.shape[:2] + (2 * x.shape[2], 2 * x.shape[3]), np.float32)  # [N, C, 2h, 2w]
    up[:, :, ::2, ::2] = x
    up = up[:, :, : shape[2], : shape[3]]  # odd sides only: mirror at the level's own border
    return _blur_axis(_blur_axis(up, 2, gain=2.0), 3, gain=2.0)


def pyramid_level(images: np.ndarray, level: int, num_levels: int) -> np.ndarray:
    """Laplacian level `level` (0 = finest) of float32 [N, C, H, W] images; the last level is the Gaussian remainder."""
    gaussian = images
    for _ in range(level):
        gaussian = pyr_down(gaussian)
    if level == num_levels - 1:
        return gaussian
    return gaussian - pyr_up(pyr_down(gaussian), gaussian.shape)


# ---------------------------------------------------------------------------- descriptors


def _images_per_chunk(images: np.ndarray) -> int:
    """Images per pyramid chunk so the float32 temporaries (about 8 copies of a chunk) stay within CHUNK_BYTES."""
    per_image = images.shape[1] * images.shape[2] * images.shape[3] * 4 * 8
    return max(1, CHUNK_BYTES // per_image)


def _level_side(images: np.ndarray, level: int) -> tuple[int, int]:
    """(rows, columns) of Laplacian level `level`: each pyr_down gives ceil(side / 2)."""
    rows, cols = images.shape[1], images.shape[2]
    for _ in range(level):
        rows, cols = (rows + 1) // 2, (cols + 1) // 2
    return rows, cols


def _descriptors(
    images: np.ndarray, level: int, num_levels: int, rows: np.ndarray, cols: np.ndarray, half: int
) -> np.ndarray:
    """Patches at centres (rows, cols) of one Laplacian level, image by chunk: float32 [N * 128, 3 * (2h+1)^2]."""
    size = 2 * half + 1
    offsets = np.arange(-half, half + 1)
    desc = np.empty((len(rows), 3 * size * size), np.float32)
    chunk = _images_per_chunk(images)
    for first in range(0, images.shape[0], chunk):
        batch = images[first : first + chunk].transpose(0, 3, 1, 2).astype(np.float32)  # [n, 3, H, W]
        lap = pyramid_level(batch, level, num_levels)  # [n, 3, h_l, w_l]
        lo, hi = first * PATCHES_PER_IMAGE, (first + batch.shape[0]) * PATCHES_PER_IMAGE
        image = (np.arange(lo, hi) // PATCHES_PER_IMAGE - first)[:, None, None, None]
        channel = np.arange(3)[None, :, None, None]
        y = rows[lo:hi, None, None, None] + offsets[None, None, :, None]
        x = cols[lo:hi, None, None, None] + offsets[None, None, None, :]
        desc[lo:hi] = lap[image, channel, y, x].reshape(hi - lo, -1)  # [p, 3, size, size] -> [p, D]
    return desc


def _normalize_per_channel(desc: np.ndarray) -> None:
    """In place: subtract each colour channel's mean and divide by its std, over all patches and pixels."""
    per_channel = desc.reshape(desc.shape[0], 3, -1)  # [P, 3, size * size] view
    rows = max(1, CHUNK_BYTES // (desc.shape[1] * 16))  # two float64 temporaries per chunk
    count = per_channel.shape[0] * per_channel.shape[2]
    total = np.zeros(3)
    for i in range(0, len(desc), rows):
        total += per_channel[i : i + rows].sum(axis=(0, 2), dtype=np.float64)
    mean = total / count
    squares = np.zeros(3)
    for i in range(0, len(desc), rows):  # second pass: exact variance, no E[x^2] - E[x]^2 cancellation
        squares += np.square(per_channel[i : i + rows] - mean[None, :, None]).sum(axis=(0, 2))
    std = np.sqrt(squares / count)
    std[std < MIN_STD] = 1.0  # flat images (e.g. an untrained generator): centre only, no 0 / 0
    for i in range(0, len(desc), rows):
        per_channel[i : i + rows] -= mean[None, :, None].astype(np.float32)
        per_channel[i : i + rows] /= std[None, :, None].astype(np.float32)


# ---------------------------------------------------------------------------- distance


def _projected_distance(a: np.ndarray, b: np.ndarray, directions: np.ndarray) -> float:
    """Mean |sorted(a @ d) - sorted(b @ d)| over patches and directions d; a, b [P, D], directions [D, K]."""
    patches = a.shape[0]
    step = max(1, CHUNK_BYTES // (4 * patches))  # directions per chunk: [step, P] float32 <= CHUNK_BYTES
    total = 0.0
    for first in range(0, directions.shape[1], step):
        dirs = directions[:, first : first + step].T  # [k, D]
        proj_a = dirs @ a.T  # [k, P]
        proj_b = dirs @ b.T
        proj_a.sort(axis=1)
        proj_b.sort(axis=1)
        proj_a -= proj_b
        total += np.abs(proj_a, out=proj_a).sum(dtype=np.float64)
    return total / (patches * directions.shape[1])


def _level_distance(reals: np.ndarray, fakes: np.ndarray, level: int, num_levels: int, seed: int) -> float:
    """SWD at one pyramid level, averaged over DIR_REPEATS sets of directions (equal sizes: one overall mean)."""
    rng = np.random.default_rng([seed, level])
    side_rows, side_cols = _level_side(reals, level)
    half = min(patch_half_width(side_rows), patch_half_width(side_cols))
    count = reals.shape[0] * PATCHES_PER_IMAGE
    rows = rng.integers(half, side_rows - half, count)
    cols = rng.integers(half, side_cols - half, count)
    sets = []
    for images in (reals, fakes):
        desc = _descriptors(images, level, num_levels, rows, cols, half)  # [N * 128, D]
        _normalize_per_channel(desc)
        sets.append(desc)
    dim = sets[0].shape[1]
    directions = rng.standard_normal((DIR_REPEATS, dim, DIRS_PER_REPEAT))
    directions /= np.sqrt(np.sum(np.square(directions), axis=1, keepdims=True))  # unit directions
    directions = directions.transpose(1, 0, 2).reshape(dim, -1).astype(np.float32)  # [D, 4 * 128]
    return _projected_distance(sets[0], sets[1], directions)
