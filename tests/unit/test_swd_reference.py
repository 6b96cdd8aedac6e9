"""The honest evaluation protocol: random samples of the whole level, disjoint real halves, SWD keyed by level."""
import numpy as np
import pytest

from pggan.metrics.reference import (eval_indices, eval_size, real_vs_real_swd, reference_split, swd_by_resolution,
                                     swd_ratio)
from pggan.metrics.swd import sliced_wasserstein


def test_eval_sample_spans_the_whole_level_and_is_reproducible():
    a = eval_indices(10_000, 256, res=32, seed=0)
    assert len(np.unique(a)) == 256 and a.max() > 5_000          # not the first rows
    assert np.array_equal(a, eval_indices(10_000, 256, res=32, seed=0))
    assert not np.array_equal(a, eval_indices(10_000, 256, res=32, seed=1))


def test_reference_halves_are_disjoint_and_sized_like_the_evaluation():
    first, second = reference_split(1000, 300, res=16, seed=0)
    assert len(first) == len(second) == 300
    assert not set(first) & set(second)
    assert eval_size(1000, 4096) == 500 and eval_size(1000, 256) == 256
    with pytest.raises(ValueError, match="needs 1000 images"):
        reference_split(999, 500, res=16, seed=0)


def test_swd_levels_are_keyed_by_resolution():
    assert swd_by_resolution([3.0, 2.0, 1.0], 64) == {64: 3.0, 32: 2.0, 16: 1.0}


def test_ratio_is_near_one_for_reals_and_large_for_noise():
    rng = np.random.default_rng(0)
    # A data set with structure: smooth gradients with a random bright square.
    base = np.linspace(0, 200, 32, dtype=np.float32)[None, :, None, None] * np.ones((600, 32, 32, 3), np.float32)
    for i in range(600):
        y, x = rng.integers(0, 24, 2)
        base[i, y:y + 8, x:x + 8] = 255
    reals = base.astype(np.uint8)
    first, second = reference_split(600, 150, res=32, seed=0)
    ref = real_vs_real_swd(reals[first], reals[second], seed=0)
    assert set(ref["swd"]) == {32, 16} and ref["num_images"] == 150
    others = reals[eval_indices(600, 150, res=32, seed=0)]
    noise = rng.integers(0, 256, (150, 32, 32, 3), dtype=np.uint8)
    fake_like_real = sliced_wasserstein(others, reals[first], seed=0)["avg"]
    fake_noise = sliced_wasserstein(noise, reals[first], seed=0)["avg"]
    assert swd_ratio(fake_like_real, ref["swd_avg"]) < 1.6
    assert swd_ratio(fake_noise, ref["swd_avg"]) > 5.0
