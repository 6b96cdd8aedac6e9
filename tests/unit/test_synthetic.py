"""The demo data set: seeded, varied shape images; written once under {root}/sources/ when data.source is synthetic."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from pggan import synthetic
from pggan.config import config_from_dict
from pipelines import cli
from pipelines.ingest import resolve_source


def test_same_seed_and_index_give_the_same_image_whatever_the_set_size():
    a = synthetic.synthetic_image(synthetic.image_rng(7, 3), 32)
    b = synthetic.synthetic_image(synthetic.image_rng(7, 3), 32)
    c = synthetic.synthetic_image(synthetic.image_rng(8, 3), 32)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 10


def test_images_have_shapes_on_a_gradient_not_flat_colour():
    imgs = np.stack([synthetic.synthetic_image(synthetic.image_rng(0, i), 64) for i in range(16)])
    assert imgs.std(axis=(1, 2)).min() > 5  # every image has structure
    assert np.abs(imgs[0].astype(int) - imgs[1]).mean() > 10  # and they differ


def test_write_synthetic_dataset_writes_count_pngs_and_a_marker(tmp_path):
    url = synthetic.write_synthetic_dataset(str(tmp_path / "demo"), count=5, size=16, seed=1)
    names = sorted(os.listdir(tmp_path / "demo"))
    assert names == ["_COMPLETE"] + [f"img{i:06d}.png" for i in range(5)]
    assert synthetic.is_complete(url)
    img = np.asarray(Image.open(tmp_path / "demo" / "img000004.png"))
    np.testing.assert_array_equal(img, synthetic.synthetic_image(synthetic.image_rng(1, 4), 16))


def test_synthetic_source_is_generated_once_under_the_root(tmp_path):
    cfg = config_from_dict({"data": {"source": "synthetic", "synthetic_count": 6, "synthetic_size": 8,
                                     "resolution": 8}, "storage": {"root": str(tmp_path)}})
    url = resolve_source(cfg, log=lambda _: None)
    assert url == f"file://{tmp_path}/sources/synthetic-6-8-s0"
    first = os.path.getmtime(tmp_path / "sources" / "synthetic-6-8-s0" / "img000000.png")
    assert resolve_source(cfg, log=lambda _: None) == url
    assert os.path.getmtime(tmp_path / "sources" / "synthetic-6-8-s0" / "img000000.png") == first


def test_make_demo_data_command_writes_the_images(tmp_path, capsys):
    assert cli.main(["make-demo-data", "--out", str(tmp_path / "d"), "--count", "3", "--size", "8"]) == 0
    assert len([n for n in os.listdir(tmp_path / "d") if n.endswith(".png")]) == 3
    assert "wrote 3 images of 8x8" in capsys.readouterr().out
