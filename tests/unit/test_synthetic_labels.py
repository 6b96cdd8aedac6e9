"""The labelled demo set: one folder per shape kind, balanced classes that per-class SWD tells apart, and the
folder layout that ingest's --labels folders turns into the class names a conditional run uses."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from pggan import synthetic
from pggan.labels import class_names
from pggan.metrics.swd import sliced_wasserstein
from pipelines.ingest import folder_labels


def test_labelled_set_has_one_folder_per_shape_kind_with_balanced_classes(tmp_path) -> None:
    url = synthetic.write_synthetic_dataset(str(tmp_path / "demo"), count=7, size=16, seed=1, labels=True)
    root = tmp_path / "demo"
    assert sorted(os.listdir(root)) == ["_COMPLETE", "circle", "square", "triangle"]
    assert sorted(os.listdir(root / "circle")) == ["img000000.png", "img000003.png", "img000006.png"]
    assert sorted(os.listdir(root / "square")) == ["img000001.png", "img000004.png"]
    assert sorted(os.listdir(root / "triangle")) == ["img000002.png", "img000005.png"]
    assert synthetic.is_complete(url)
    assert json.loads((root / "_COMPLETE").read_text())["labels"] == "folders"
    img = np.asarray(Image.open(root / "square" / "img000004.png"))
    np.testing.assert_array_equal(img, synthetic.synthetic_image(synthetic.image_rng(1, 4), 16, "square"))


def test_ingest_turns_the_folders_into_the_shape_kinds_as_classes(tmp_path) -> None:
    synthetic.write_synthetic_dataset(str(tmp_path / "demo"), count=6, size=8, labels=True)
    keys = [f"{d}/{n}" for d in sorted(os.listdir(tmp_path / "demo")) if not d.startswith("_")
            for n in os.listdir(tmp_path / "demo" / d)]
    manifest = {"labels": folder_labels(keys, str(tmp_path / "demo"))}   # what ingest stores
    assert class_names(manifest) == synthetic.SHAPES


def test_each_class_draws_its_shape_in_its_own_colour() -> None:
    def share_near(images: np.ndarray, colour: tuple[int, int, int]) -> float:
        """Fraction of pixels within the class jitter of `colour`."""
        return float((np.abs(images.astype(int) - colour).max(axis=3) <= synthetic.CLASS_JITTER).mean())

    for kind in synthetic.SHAPES:
        images = np.stack([synthetic.synthetic_image(synthetic.image_rng(0, i), 32, kind) for i in range(30)])
        own = share_near(images, synthetic.CLASS_COLOURS[kind])
        others = [share_near(images, synthetic.CLASS_COLOURS[k]) for k in synthetic.SHAPES if k != kind]
        assert own > 0.1 and max(others) < own / 5, (kind, own, others)


def test_per_class_swd_tells_the_classes_apart() -> None:
    n = 96
    sets = {kind: np.stack([synthetic.synthetic_image(synthetic.image_rng(0, i), 16, kind)
                            for i in range(j, 6 * n, 3)]) for j, kind in enumerate(synthetic.SHAPES)}
    for a in synthetic.SHAPES:
        within = sliced_wasserstein(sets[a][:n], sets[a][n:])["avg"]        # two halves of one class
        for b in synthetic.SHAPES:
            if b != a:
                across = sliced_wasserstein(sets[a][:n], sets[b][n:])["avg"]
                assert across > 1.8 * within, (a, b, within, across)


def test_a_labelled_set_needs_one_image_per_class_and_kinds_are_checked(tmp_path) -> None:
    with pytest.raises(ValueError, match="count >= 3"):
        synthetic.write_synthetic_dataset(str(tmp_path / "d"), count=2, size=8, labels=True)
    with pytest.raises(ValueError, match="kind='star'"):
        synthetic.synthetic_image(synthetic.image_rng(0, 0), 8, "star")
