"""Sampling a trained generator: seeded images, latent walks, and `pggan generate` writing PNG / NPY / GIF."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pggan.checkpoint import build_generator, capture_rng, load_checkpoint, save_checkpoint, training_state
from pggan.config import load_config
from pggan.generate import generate_images, interpolate
from pggan.stage_nets import build_stage
from pipelines.cli import main

RES = 8


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    """A real stage checkpoint at 8x8 of the tiny config (untrained weights are enough to sample)."""
    cfg = load_config("tiny.yaml")
    nets = build_stage(cfg.model, cfg.optim, RES, 1e-3, "cpu", init_seed=1)
    state = training_state(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, resolution=RES, stage_nimg=0,
                           alpha=1.0, rng=[capture_rng()], config=cfg)
    path = str(tmp_path_factory.mktemp("ckpt") / "r0008")
    save_checkpoint(path, state)
    return path


@pytest.fixture(scope="module")
def G(checkpoint_dir):
    return build_generator(load_checkpoint(checkpoint_dir))


def test_same_seed_gives_the_same_images_and_another_seed_others(G):
    a, b, c = generate_images(G, 5, seed=3), generate_images(G, 5, seed=3, batch=2), generate_images(G, 5, seed=4)
    assert a.shape == (5, RES, RES, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)                         # batching does not change the images
    assert not np.array_equal(a, c)


def test_a_latent_walk_moves_in_small_steps_and_loops(G):
    frames = interpolate(G, num=2, seed=0, steps=6, keyframes=3).astype(np.float32)   # [18, 2, R, R, 3]
    assert frames.shape == (18, 2, RES, RES, 3)
    step = np.abs(np.diff(frames, axis=0)).mean()
    jump = np.abs(frames[0] - frames[6]).mean()                 # keyframe 0 -> keyframe 1
    closing = np.abs(frames[-1] - frames[0]).mean()              # last frame -> back to the start
    assert step < jump and closing < jump


def test_cli_writes_a_png_grid_raw_npy_and_a_gif_walk_from_a_checkpoint(checkpoint_dir, G, tmp_path, capsys):
    png, npy, gif = (str(tmp_path / n) for n in ("grid.png", "imgs.npy", "walk.gif"))
    base = ["generate", "--model", checkpoint_dir, "--num", "4", "--seed", "0"]
    assert main(base + ["--out", png]) == 0
    assert main(base + ["--out", npy, "--format", "npy"]) == 0
    assert main(base + ["--out", gif, "--interpolate", "3", "--keyframes", "2"]) == 0

    assert np.asarray(Image.open(png)).shape == (2 * RES, 2 * RES, 3)
    np.testing.assert_array_equal(np.load(npy), generate_images(G, 4, seed=0))
    with Image.open(gif) as walk:
        assert walk.n_frames == 6 and walk.size == (2 * RES, 2 * RES)


def test_cli_says_what_is_wrong_with_an_unknown_model(tmp_path, capsys):
    assert main(["generate", "--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "not an MLflow model URI" in err and "nothing" in err
    assert not (tmp_path / "x.png").exists()


def test_a_gif_without_a_walk_and_a_bad_count_are_refused(checkpoint_dir, tmp_path, capsys):
    assert main(["generate", "--model", checkpoint_dir, "--out", str(tmp_path / "a.gif")]) == 2
    assert "--interpolate" in capsys.readouterr().err
    assert main(["generate", "--model", checkpoint_dir, "--num", "0", "--out", str(tmp_path / "a.png")]) == 2
    assert "at least 1" in capsys.readouterr().err
