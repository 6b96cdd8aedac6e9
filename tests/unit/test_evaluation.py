"""The honest evaluation: reals drawn at random from the whole level, as many fakes, SWD keyed by resolution,
both sizes and the seed recorded, and swd_ratio against the data set's real-vs-real SWD, stored once per key."""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pggan import evaluation as ev
from pggan.config import load_config
from pggan.dataset import level_name
from pggan.metrics.reference import eval_indices, eval_size
from pggan.nn import Generator


def ordered_level(total: int, res: int) -> np.ndarray:
    """A level in 'file order': dark images first, bright ones last (as similar files sit together)."""
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, total)[:, None, None, None]                        # [N, 1, 1, 1]
    noise = rng.normal(0, 20, (total, res, res, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)                          # [N, res, res, 3]


def generator(res: int) -> Generator:
    torch.manual_seed(0)
    return Generator(load_config("tiny.yaml").model, res).eval()


def recording(level: ev.Level) -> tuple[ev.Level, list[np.ndarray]]:
    """The same level, remembering which rows were read."""
    seen: list[np.ndarray] = []

    def read(idx: np.ndarray) -> np.ndarray:
        seen.append(np.asarray(idx))
        return level.read_rows(idx)

    return ev.Level(level.resolution, level.total, read), seen


def test_reals_are_a_seeded_sample_of_the_whole_level_and_every_size_is_recorded():
    level, seen = recording(ev.memory_level(ordered_level(400, 16)))
    result = ev.evaluate_generator(generator(16), level, num_images=64, seed=3)
    first, second, reals = seen                                  # the reference's two halves, then the reals
    np.testing.assert_array_equal(reals, eval_indices(400, 64, res=16, seed=3))
    assert reals.max() > 300 and reals.min() < 100               # from the whole level, not its first rows
    assert not set(first) & set(second) and len(first) == len(second) == 64
    assert (result["num_reals"], result["num_fakes"], result["level_size"], result["seed"]) == (64, 64, 400, 3)
    assert result["resolution"] == 16 and list(result["swd"]) == list(result["real_swd"]) == ["16"]


def test_swd_is_keyed_by_resolution_and_the_ratio_divides_by_real_vs_real():
    level = ev.memory_level(ordered_level(300, 32))
    result = ev.evaluate_generator(generator(32), level, num_images=32, seed=0)
    assert list(result["swd"]) == ["32", "16"]                   # finest first, JSON keys
    assert result["swd_avg"] == pytest.approx(np.mean(list(result["swd"].values())))
    assert result["swd_ratio"] == pytest.approx(result["swd_avg"] / result["real_swd_avg"])
    per_level = {r: result["swd"][r] / result["real_swd"][r] for r in ("32", "16")}
    assert result["swd_ratio_levels"] == pytest.approx(per_level)
    assert result["swd_ratio"] > 2                               # an untrained G is far from the data
    assert 0 <= result["ms_ssim"] <= 1
    assert ev.format_levels(result["swd"]).startswith("{32: ")


def test_a_small_level_is_compared_with_half_of_it_and_a_tiny_one_is_refused():
    result = ev.evaluate_generator(generator(8), ev.memory_level(ordered_level(50, 8)), num_images=256, seed=0)
    assert result["num_reals"] == result["num_fakes"] == eval_size(50, 256) == 25
    with pytest.raises(ev.EvaluateError, match="has 3 image"):
        ev.evaluate_generator(generator(8), ev.memory_level(ordered_level(3, 8)), num_images=256, seed=0)


def test_a_larger_generator_is_box_downsampled_to_the_level():
    result = ev.evaluate_generator(generator(16), ev.memory_level(ordered_level(100, 8)), num_images=20, seed=0)
    assert result["resolution"] == 8 and list(result["swd"]) == ["8"]
    with pytest.raises(ev.EvaluateError, match="makes 8x8 images"):
        ev.evaluate_generator(generator(8), ev.memory_level(ordered_level(100, 16)), num_images=20, seed=0)


def write_level(dataset: str, images: np.ndarray) -> None:
    """One Parquet level as ingest lays it out (image as a flat uint8 list per row)."""
    res = images.shape[1]
    flat = pa.array(images.reshape(-1), pa.uint8())
    column = pa.FixedSizeListArray.from_arrays(flat, res * res * 3)
    folder = os.path.join(dataset, level_name(res))
    os.makedirs(folder, exist_ok=True)
    pq.write_table(pa.table({"image": column, "label": np.full(len(images), -1), "key": [f"{i}" for i in
                                                                                   range(len(images))]}),
                   os.path.join(folder, "part-0.parquet"))


def test_the_stored_reference_is_computed_once_per_key_and_the_numbers_match_memory(tmp_path, monkeypatch):
    dataset, images = str(tmp_path / "ds"), ordered_level(120, 16)
    write_level(dataset, images)
    G = generator(16)
    stored = ev.evaluate_dataset(G, dataset, 16, num_images=40, seed=1)
    path = tmp_path / "ds" / "swd_reference" / "r0016-n40-s1.json"
    assert path.exists()
    assert stored == ev.evaluate_generator(G, ev.memory_level(images), 40, 1)   # same sample, same numbers

    def no_recompute(*args, **kwargs):
        raise AssertionError("the stored reference should have been loaded")

    monkeypatch.setattr(ev, "compute_reference", no_recompute)
    assert ev.evaluate_dataset(G, dataset, 16, num_images=40, seed=1) == stored
    monkeypatch.undo()
    ev.evaluate_dataset(G, dataset, 16, num_images=30, seed=1)                  # another n: another file
    assert sorted(os.listdir(path.parent)) == ["r0016-n30-s1.json", "r0016-n40-s1.json"]


def test_a_reference_of_an_older_level_is_made_again(tmp_path):
    dataset = str(tmp_path / "ds")
    write_level(dataset, ordered_level(120, 16))
    level = ev.stored_level(dataset, 16)
    first = ev.stored_reference(dataset, level, 40, 0)
    write_level(dataset, ordered_level(100, 16)[::-1].copy())                    # re-ingested: other images
    again = ev.stored_reference(dataset, ev.stored_level(dataset, 16), 40, 0)
    assert again["level_size"] == 100 and again["swd_avg"] != first["swd_avg"]
