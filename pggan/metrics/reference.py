"""The honest evaluation protocol and its yardstick: a seeded random sample of a level's reals, and the data set's
own SWD (two disjoint random halves of real images, the same size as the evaluation), so that a generator's SWD
reads as a ratio: `swd_ratio` = SWD(fakes, reals) / SWD(reals, reals') = 1.0 means as close as two real samples.

Sizes matter: SWD grows as the sample shrinks (fewer patches, noisier sorted projections), so a ratio only means
something when both SWDs use the same number of images, the same resolution and the same SWD seed. Everything
here is keyed by (resolution, num_images, seed) for that reason.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pggan.metrics.swd import sliced_wasserstein

# Stream ids of np.random.default_rng([seed, res, STREAM]): the reals the fakes are compared with, and the split
# of the data set into two halves for the real-vs-real reference. Independent draws, reproducible from the seed.
EVAL_STREAM = 1
REFERENCE_STREAM = 2


def eval_size(total: int, requested: int) -> int:
    """Images per set for an evaluation of a level of `total` images: `requested`, capped at total // 2 so that
    the real-vs-real reference can use two disjoint sets of the same size."""
    return max(0, min(int(requested), int(total) // 2))


def eval_indices(total: int, n: int, res: int, seed: int) -> np.ndarray:
    """`n` distinct row indices of a level of `total` rows, a seeded random sample of the whole level (never the
    first rows: ingest writes files in source order, where similar images sit together). Sorted, for reading."""
    rng = np.random.default_rng([int(seed), int(res), EVAL_STREAM])
    return np.sort(rng.choice(int(total), size=int(n), replace=False))


def reference_split(total: int, n: int, res: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint seeded random sets of `n` row indices each (sorted) from a level of `total` >= 2n rows."""
    if 2 * n > total:
        raise ValueError(f"a real-vs-real reference of {n} + {n} images needs {2 * n} images; the level has {total}. "
                         f"Use eval_size({total}, {n}) = {eval_size(total, n)} images per set")
    rng = np.random.default_rng([int(seed), int(res), REFERENCE_STREAM])
    order = rng.permutation(int(total))
    return np.sort(order[:n]), np.sort(order[n:2 * n])


def swd_by_resolution(levels: list[float], res: int) -> dict[int, float]:
    """SWD levels (finest first, as sliced_wasserstein returns them) keyed by their resolution: {32: .., 16: ..}."""
    return {int(res) >> i: float(v) for i, v in enumerate(levels)}


def real_vs_real_swd(first: np.ndarray, second: np.ndarray, seed: int) -> dict[str, Any]:
    """The data set's own SWD: two disjoint uint8 [n, R, R, 3] sets of reals, with the evaluation's SWD seed.
    {"swd": {res: x1e3}, "swd_avg": float, "num_images": n, "seed": seed}."""
    result = sliced_wasserstein(first, second, seed=seed)
    return {"swd": swd_by_resolution(result["levels"], first.shape[1]), "swd_avg": float(result["avg"]),
            "num_images": int(len(first)), "seed": int(seed)}


def swd_ratio(fake_swd_avg: float, reference_swd_avg: float) -> float:
    """Fake-vs-real SWD over real-vs-real SWD (same sizes, resolution and seed); inf when the reference is 0."""
    if reference_swd_avg <= 0.0:
        return float("inf")
    return float(fake_swd_avg) / float(reference_swd_avg)


def swd_ratio_levels(fake: dict, reference: dict) -> dict:
    """The ratio per SWD level (resolution -> fake / real-vs-real), for the levels both have; keys kept as given
    (ints, or the strings of JSON-shaped results)."""
    return {r: swd_ratio(fake[r], reference[r]) for r in fake if r in reference}
