"""Against a real `mlflow server`: the registered generator (aliases newest/champion), pulled by alias in a fresh
process and by `pggan generate`, the champion moving only on a better SWD of a version evaluated alike, and `mlflow
models serve` answering."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid

import numpy as np
import pytest
import requests
import torch

from pipelines.cli import main
from pggan.config import load_config
from pggan.generate import generate_images
from pggan.nn import Generator
from pggan.tracking.client import client_for
from pggan.tracking.registry import ALIAS_CHAMPION, ALIAS_NEWEST, log_and_register_generator
from pggan.tracking.runs import start_parent_run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

RES = 8


def registry_config(url: str, model_name: str, *sets: str):
    return load_config("tiny.yaml", [f"tracking.uri={url}", f"tracking.model_name={model_name}",
                                     f"tracking.experiment=exp-{model_name}", *sets])


def tiny_generator(cfg, seed: int, res: int = RES) -> Generator:
    torch.manual_seed(seed)
    return Generator(cfg.model, res).eval()


def evaluated(swd_avg: float, res: int = RES, num: int = 64, seed: int = 0) -> dict:
    """A final stage's evaluation as run.json keeps it (the fields registration reads)."""
    return {"swd_avg": swd_avg, "swd_ratio": swd_avg / 2, "resolution": res, "num_reals": num, "num_fakes": num,
            "seed": seed}


@pytest.fixture(scope="module")
def registered(mlflow_server):
    """One generator logged on a parent run and registered as version 1 of a fresh model name."""
    name = f"pggan-{uuid.uuid4().hex[:8]}"
    cfg = registry_config(mlflow_server.url, name)
    G = tiny_generator(cfg, 0)
    parent = start_parent_run(cfg, "registered")
    version = log_and_register_generator(G, cfg, parent, evaluated(5.0)).version
    return {"cfg": cfg, "G": G, "name": name, "version": version, "parent": parent, "url": mlflow_server.url}


def test_registry_holds_the_version_with_its_aliases_and_score(registered):
    client = client_for(registered["url"])
    name = registered["name"]
    for alias in (ALIAS_NEWEST, ALIAS_CHAMPION):
        assert client.get_model_version_by_alias(name, alias).version == registered["version"] == "1"
    version = client.get_model_version(name, "1")
    assert float(version.tags["swd_avg"]) == 5.0 and float(version.tags["swd_ratio"]) == 2.5
    assert version.tags["pggan.resolution"] == str(RES) and version.tags["pggan.dataset"] == "synthetic-128-16-s0-8"
    assert (version.tags["pggan.eval_num_images"], version.tags["pggan.eval_seed"]) == ("64", "0")
    assert client.get_run(registered["parent"]).data.tags["pggan.model_version"] == f"{name}/1"


def test_model_pulled_by_alias_in_a_fresh_process_generates_the_same_images(registered, tmp_path):
    out = tmp_path / "images.npy"
    code = ("import sys, numpy as np, mlflow.pytorch\n"
            "from pggan.generate import generate_images\n"
            "G = mlflow.pytorch.load_model(sys.argv[1])\n"
            "raw = G(__import__('torch').zeros(2, G.model.latent_dim))\n"
            "assert tuple(raw.shape) == (2, 3, G.resolution, G.resolution), raw.shape\n"
            "np.save(sys.argv[2], generate_images(G, 6, seed=11))\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered["url"]}
    done = subprocess.run([sys.executable, "-c", code, f"models:/{registered['name']}@{ALIAS_CHAMPION}", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    images = np.load(out)
    assert images.shape == (6, RES, RES, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, generate_images(registered["G"], 6, seed=11))


def test_generate_command_pulls_the_champion_by_alias(registered, tmp_path, capsys):
    npy, png = str(tmp_path / "g.npy"), str(tmp_path / "g.png")
    base = ["generate", "--model", f"models:/{registered['name']}@champion", "--tracking-uri", registered["url"],
            "--num", "4", "--seed", "0"]
    assert main(base + ["--out", npy]) == 0
    assert main(base + ["--out", png]) == 0
    np.testing.assert_array_equal(np.load(npy), generate_images(registered["G"], 4, seed=0))
    assert os.path.getsize(png) > 0


def test_champion_alias_moves_only_when_the_swd_improves(mlflow_server):
    name = f"pggan-champ-{uuid.uuid4().hex[:8]}"
    cfg = registry_config(mlflow_server.url, name)
    parent = start_parent_run(cfg, "champion")
    client = client_for(mlflow_server.url)

    def aliases() -> tuple[str, str]:
        return (client.get_model_version_by_alias(name, ALIAS_NEWEST).version,
                client.get_model_version_by_alias(name, ALIAS_CHAMPION).version)

    assert log_and_register_generator(tiny_generator(cfg, 1), cfg, parent, evaluated(5.0)).version == "1"
    assert aliases() == ("1", "1")
    worse = log_and_register_generator(tiny_generator(cfg, 2), cfg, parent, evaluated(7.0))
    assert worse.version == "2" and not worse.champion and "stays at version 1" in worse.reason
    assert aliases() == ("2", "1")                              # worse: newest moves, champion stays
    better = log_and_register_generator(tiny_generator(cfg, 3), cfg, parent, evaluated(3.0))
    assert better.version == "3" and better.champion and "beats version 1's 5" in better.reason
    assert aliases() == ("3", "3")                              # better: champion moves
    assert client.get_run(parent).data.tags["pggan.champion_reason"] == better.reason


def test_a_better_scoring_demo_never_displaces_a_champion_of_other_data(mlflow_server):
    """A 32x32 demo-like version with a far lower SWD, after a champion trained on another data set at another
    resolution: the champion stays, and the reason names both."""
    name = f"pggan-like-{uuid.uuid4().hex[:8]}"
    batches = "schedule.batch_size={4: 16, 8: 16, 16: 16, 32: 16, 64: 16}"
    photos = registry_config(mlflow_server.url, name, "data.name=photos-64", "data.resolution=64", batches)
    demo = registry_config(mlflow_server.url, name, "data.resolution=32", batches)
    client = client_for(mlflow_server.url)
    first = log_and_register_generator(tiny_generator(photos, 1, 64), photos, start_parent_run(photos, "photos"),
                                       evaluated(9.0, res=64, num=1000))
    assert first.champion
    done = log_and_register_generator(tiny_generator(demo, 2, 32), demo, start_parent_run(demo, "demo"),
                                      evaluated(1.0, res=32, num=64))
    assert done.version == "2" and not done.champion
    assert client.get_model_version_by_alias(name, ALIAS_CHAMPION).version == "1"
    assert client.get_model_version_by_alias(name, ALIAS_NEWEST).version == "2"
    assert "stays at version 1" in done.reason and "photos-64 at 64x64, 1000 images" in done.reason
    assert "synthetic-128-16-s0-32 at 32x32, 64 images" in done.reason and "\n" not in done.reason


# ----------------------------------------------------------------------------------------------------------------
# Serving: `mlflow models serve` on loopback, one real request.

@pytest.fixture(scope="module")
def model_server(registered, tmp_path_factory):
    from mlflowserver import stop_process_group
    from s3server import free_port

    port = free_port()
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    # The scoring server execs `uvicorn` from PATH: as in an activated virtualenv.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered["url"], "PATH": path}
    cmd = [mlflow_cli, "models", "serve", "-m", f"models:/{registered['name']}@champion", "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow models serve did not come up: {log_path.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        stop_process_group(proc)


def test_served_model_answers_a_json_request_with_the_seeds_png_images(registered, model_server):
    from pggan.tracking.serving import decode_png_column

    import pandas as pd

    answer = requests.post(f"{model_server}/invocations", json={"dataframe_records": [{"num": 3, "seed": 7}]},
                           headers={"Content-Type": "application/json"}, timeout=120)
    assert answer.status_code == 200, answer.text[:2000]
    rows = pd.DataFrame(answer.json()["predictions"])
    assert list(rows["index"]) == [0, 1, 2] and set(rows["seed"]) == {7}
    np.testing.assert_array_equal(decode_png_column(rows), generate_images(registered["G"], 3, seed=7))

    bad = requests.post(f"{model_server}/invocations", json={"dataframe_records": [{"num": 0}]},
                        headers={"Content-Type": "application/json"}, timeout=60)
    assert bad.status_code == 400 and "at least 1" in bad.text
