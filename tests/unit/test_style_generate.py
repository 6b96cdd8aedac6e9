"""Generating from a StyleGAN checkpoint: truncation (psi 0 = the mean-w image for every z), constant or seeded
random noise, the style-mixing figure, the pyfunc's psi and seed, and the one-line refusals for a PGGAN model."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from PIL import Image

from pggan.checkpoint import build_generator, capture_rng, load_checkpoint, save_checkpoint, training_state
from pggan.config import load_config
from pggan.generate import GenerateError, generate_images, style_mix_images
from pggan.nn.style_layers import NoiseInjection
from pggan.stage_nets import build_stage
from pggan.tracking import serving
from pipelines.cli import main

RES = 16
STYLE = ["model.arch=stylegan", "optim.loss=logistic-r1", "model.mapping_layers=2"]


def write_checkpoint(path: str, overrides: list[str]) -> str:
    """A stage checkpoint at 16x16 of the tiny config; a StyleGAN one gets a w_avg away from 0 and noise scales
    switched on, so that truncation and noise show in the images."""
    cfg = load_config("tiny.yaml", overrides)
    nets = build_stage(cfg.model, cfg.optim, RES, 1e-3, "cpu", init_seed=1)
    if cfg.model.arch == "stylegan":
        with torch.no_grad():
            nets.G.train()(torch.randn(64, cfg.model.latent_dim), 1.0)    # tracks w_avg
            for m in nets.G.modules():
                if isinstance(m, NoiseInjection):
                    m.weight.fill_(0.5)
        nets.G_ema.load_state_dict(nets.G.state_dict())
    state = training_state(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, resolution=RES, stage_nimg=0,
                           alpha=1.0, rng=[capture_rng()], config=cfg)
    save_checkpoint(path, state)
    return path


@pytest.fixture(scope="module")
def style_ckpt(tmp_path_factory):
    return write_checkpoint(str(tmp_path_factory.mktemp("style") / "r0016"), STYLE)


@pytest.fixture(scope="module")
def pggan_ckpt(tmp_path_factory):
    return write_checkpoint(str(tmp_path_factory.mktemp("pggan") / "r0016"), [])


@pytest.fixture(scope="module")
def G(style_ckpt):
    return build_generator(load_checkpoint(style_ckpt))


def mean_w_image(G) -> np.ndarray:
    """The image of w = w_avg on every layer, constant noise: uint8 [R, R, 3]."""
    with torch.no_grad():
        ws = G.w_avg.reshape(1, 1, -1).repeat(1, G.num_layers, 1)          # [1, L, W]
        img = G.synthesis(ws, 1.0, "const")                                  # [1, 3, R, R]
    return ((img[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def test_psi_0_gives_the_mean_w_image_for_every_z_and_psi_1_does_not(G):
    assert G.w_avg.abs().sum() > 0
    truncated = generate_images(G, 6, seed=2, psi=0.0, noise_mode="const")   # [6, R, R, 3]
    target = mean_w_image(G)
    for img in truncated:
        assert np.abs(img.astype(int) - target.astype(int)).max() <= 1
    plain = generate_images(G, 6, seed=2)
    assert np.abs(plain.astype(int) - plain[:1].astype(int)).max() > 10       # different z, different images


def test_the_same_seed_gives_the_same_images_with_either_noise(G):
    for noise in ("const", "random"):
        np.testing.assert_array_equal(generate_images(G, 4, seed=7, noise_mode=noise),
                                      generate_images(G, 4, seed=7, noise_mode=noise))
    const, rand = generate_images(G, 4, seed=7, noise_mode="const"), generate_images(G, 4, seed=7, noise_mode="random")
    assert not np.array_equal(const, rand)                                    # the noise shows
    np.testing.assert_array_equal(const, generate_images(G, 4, seed=7))        # const is the default


def test_style_mix_grid_has_a_row_of_column_sources_and_rows_per_group(G):
    images = style_mix_images(G, rows=2, cols=3, seed=0)                     # 16x16: coarse and middle
    assert images.shape == ((1 + 2 * 2) * (1 + 3), RES, RES, 3)
    assert (images[0] == 255).all()                                           # the blank corner
    only_coarse = style_mix_images(G, rows=2, cols=3, seed=0, groups=["coarse"])
    assert only_coarse.shape == ((1 + 2) * (1 + 3), RES, RES, 3)
    with pytest.raises(GenerateError, match="fine"):
        style_mix_images(G, rows=2, cols=3, seed=0, groups=["fine"])          # no 64x64 layers in a 16x16 G


def test_cli_truncation_style_mix_and_noise(style_ckpt, G, tmp_path):
    out = str(tmp_path / "trunc.npy")
    assert main(["generate", "--model", style_ckpt, "--out", out, "--num", "3", "--truncation", "0",
                 "--noise", "const"]) == 0
    images = np.load(out)
    assert images.shape == (3, RES, RES, 3)
    np.testing.assert_array_equal(images, generate_images(G, 3, seed=0, psi=0.0))
    png = str(tmp_path / "mix.png")
    assert main(["generate", "--model", style_ckpt, "--out", png, "--style-mix", "2x3", "--noise", "random"]) == 0
    assert Image.open(png).size == ((1 + 3) * RES, (1 + 2 * 2) * RES)         # 4 columns, 1 + 2 groups x 2 rows


@pytest.mark.parametrize("flags, word", [(["--truncation", "0.7"], "psi"), (["--style-mix", "2x2"], "StyleGAN"),
                                         (["--noise", "random"], "noise")])
def test_a_pggan_model_refuses_style_options_in_one_line(pggan_ckpt, tmp_path, capsys, flags, word):
    assert main(["generate", "--model", pggan_ckpt, "--out", str(tmp_path / "x.png"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and word in err and "stylegan" in err


def test_the_pyfunc_takes_psi_and_seed_per_request(G, tmp_path):
    import mlflow.pyfunc

    path = str(tmp_path / "model")
    serving.save_model(path, generator=G)
    model = mlflow.pyfunc.load_model(path)
    answer = model.predict(pd.DataFrame({"num": [3, 2], "seed": [4, 4], "psi": [0.0, 1.0]}))
    images = serving.decode_png_column(answer)                                # [5, R, R, 3]
    target = mean_w_image(G)
    assert all(np.abs(img.astype(int) - target.astype(int)).max() <= 1 for img in images[:3])
    np.testing.assert_array_equal(images[3:], generate_images(G, 2, seed=4))   # psi 1: the plain images
    again = serving.decode_png_column(model.predict(pd.DataFrame({"num": [2], "seed": [4]})))
    np.testing.assert_array_equal(again, images[3:])                         # psi optional, reproducible
    with pytest.raises(MlflowException, match="psi"):
        model.predict(pd.DataFrame({"num": [1], "psi": [5.0]}))


def test_the_pyfunc_of_a_pggan_model_refuses_psi(pggan_ckpt, tmp_path):
    import mlflow.pyfunc

    path = str(tmp_path / "model")
    serving.save_model(path, generator=build_generator(load_checkpoint(pggan_ckpt)))
    with pytest.raises(MlflowException, match="StyleGAN"):
        mlflow.pyfunc.load_model(path).predict(pd.DataFrame({"num": [1], "psi": [0.5]}))


def test_the_evaluation_scores_random_noise_drawn_from_its_seed(G):
    from pggan.evaluation import fake_images

    a, b = fake_images(G, 4, RES, seed=1), fake_images(G, 4, RES, seed=1)
    np.testing.assert_array_equal(a, b)                                       # a reproducible score
    np.testing.assert_array_equal(a, generate_images(G, 4, seed=1, noise_mode="random"))
    assert not np.array_equal(a, generate_images(G, 4, seed=1, noise_mode="const"))


def test_a_stylegan_latent_walk_keeps_its_noise_still_and_takes_psi(G):
    from pggan.generate import interpolate

    walk = interpolate(G, num=2, seed=0, steps=2, keyframes=2, noise_mode="random")   # [4, 2, R, R, 3]
    again = interpolate(G, num=2, seed=0, steps=2, keyframes=2, noise_mode="random")
    np.testing.assert_array_equal(walk, again)
    flat = interpolate(G, num=2, seed=0, steps=2, keyframes=2, psi=0.0)              # every frame the mean w
    assert np.abs(flat.astype(int) - flat[:1, :1].astype(int)).max() <= 1
