"""The generator saved as an MLflow model serves the seed's PNG images through pyfunc, also when the model was saved
before the serving code moved into pggan.tracking (its MLmodel still names the old loader module)."""
from __future__ import annotations

import os
import shutil

import mlflow.pyfunc
import pandas as pd
import pytest
import torch
import yaml

from pggan.config import load_config
from pggan.generate import generate_images
from pggan.nn import Generator
from pggan.tracking import serving


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny 8x8 generator saved as an MLflow model folder (no tracking server needed)."""
    torch.manual_seed(0)
    G = Generator(load_config("tiny.yaml").model, 8).eval()
    path = str(tmp_path_factory.mktemp("model") / "generator")
    serving.save_model(path, generator=G)
    return G, path


def loader_module(path: str) -> str:
    with open(os.path.join(path, "MLmodel")) as f:
        return yaml.safe_load(f)["flavors"]["python_function"]["loader_module"]


def served_images(path: str, num: int, seed: int):
    answer = mlflow.pyfunc.load_model(path).predict(pd.DataFrame({"num": [num], "seed": [seed]}))
    return serving.decode_png_column(answer)                   # [num, R, R, 3]


def test_a_saved_generator_serves_the_seeds_images(saved):
    G, path = saved
    assert loader_module(path) == "pggan.tracking.serving"
    assert (served_images(path, 3, 5) == generate_images(G, 3, seed=5)).all()


def test_a_model_saved_before_the_move_still_loads_and_serves(saved, tmp_path):
    G, path = saved
    older = str(tmp_path / "older")
    shutil.copytree(path, older)                               # the same model, its MLmodel naming the old module
    mlmodel = os.path.join(older, "MLmodel")
    with open(mlmodel) as f:
        text = f.read().replace("loader_module: pggan.tracking.serving", "loader_module: pggan.serving")
    with open(mlmodel, "w") as f:
        f.write(text)
    assert loader_module(older) == "pggan.serving"
    assert (served_images(older, 2, 9) == generate_images(G, 2, seed=9)).all()
