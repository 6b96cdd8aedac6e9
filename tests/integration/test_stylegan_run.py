"""StyleGAN through the pipeline: a tiny `full_run` with model.arch=stylegan and the logistic loss + R1, tracked
and registered, whose registered model generates with truncation through `pggan generate` and the pyfunc; and
a StyleGAN stage with WGAN-GP whose killed worker restarts it from its newest checkpoint."""
from __future__ import annotations

import contextlib
import io
import json
import os
import uuid

import numpy as np
import pandas as pd
import pytest

from pggan import storage as st
from pggan.checkpoint import load_checkpoint
from pggan.dataset import dataset_url
from pggan.generate import generate_images, load_generator
from pggan.tracking.client import client_for
from pggan.tracking.registry import ALIAS_NEWEST
from pipelines.runtime import worker_config
from pipelines.train_stage import StageJob
from test_faults import run_stage_killing_rank1  # tests/integration is on sys.path
from test_mlflow_full_run import parent_and_children
from train_helpers import run_dir, starts, tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

STYLE = ["model.arch=stylegan", "model.mapping_layers=2"]


def test_a_tiny_stylegan_run_with_logistic_r1_trains_registers_and_generates(tiny_root, mlflow_server, tmp_path,
                                                                              capsys):
    from pipelines.cli import main as cli
    from pipelines.full_run import main

    tag = uuid.uuid4().hex[:6]
    model, experiment = f"stylegan-e2e-{tag}", f"style-{tag}"
    argv = ["--config", "tiny.yaml", "--run-id", "style", "--set", f"storage.root={tiny_root}",
            *[a for s in [*STYLE, "optim.loss=logistic-r1", f"tracking.uri={mlflow_server.url}",
                          f"tracking.model_name={model}", f"tracking.experiment={experiment}"]
              for a in ("--set", s)]]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code == 0, (out.getvalue()[-3000:], err.getvalue()[-3000:])

    with open(os.path.join(run_dir(tiny_root, "style"), "run.json")) as f:
        run = json.load(f)
    assert run["status"] == "done" and run["config"]["model"]["arch"] == "stylegan"
    assert [(s["resolution"], s["status"]) for s in run["stages"].values()] == [(4, "done"), (8, "done")]
    assert all(np.isfinite(s["metrics"]["swd_ratio"]) for s in run["stages"].values())
    ticks = [line for line in out.getvalue().splitlines() if "kimg" in line and " r1 " in line]
    assert ticks and not any(" gp " in line for line in ticks)            # the tick line of logistic + R1
    state = load_checkpoint(run["stages"]["8"]["checkpoint"])
    assert state["G_ema"]["w_avg"].abs().sum() > 0                         # the tracked mean w is checkpointed

    client = client_for(mlflow_server.url)
    _, stages = parent_and_children(client, experiment, "style")
    for res, child in stages.items():
        for curve in ("d_loss", "g_loss", "r1", "real_score", "fake_score"):
            assert len(client.get_metric_history(child.info.run_id, curve)) >= 2, (res, curve)
    newest = client.get_model_version_by_alias(model, ALIAS_NEWEST)
    uri = f"models:/{model}@{ALIAS_NEWEST}"
    G = load_generator(uri, tracking_uri=mlflow_server.url)
    assert type(G).__name__ == "StyleGenerator" and newest.tags["pggan.resolution"] == "8"

    npy = str(tmp_path / "trunc.npy")
    assert cli(["generate", "--model", uri, "--tracking-uri", mlflow_server.url, "--out", npy, "--num", "4",
                "--truncation", "0"]) == 0
    truncated = np.load(npy)                                               # psi 0: the mean-w image for every z
    assert truncated.shape == (4, 8, 8, 3) and (np.abs(truncated.astype(int) - truncated[:1]).max() <= 1)
    assert cli(["generate", "--model", uri, "--tracking-uri", mlflow_server.url, "--out", str(tmp_path / "m.npy"),
                "--style-mix", "2x2"]) == 0
    assert np.load(tmp_path / "m.npy").shape == ((1 + 2) * (1 + 2), 8, 8, 3)   # 8x8: coarse layers only
    capsys.readouterr()

    import mlflow.pyfunc
    from pggan.tracking.client import using_tracking_uri
    from pggan.tracking.serving import decode_png_column

    with using_tracking_uri(mlflow_server.url):
        served = mlflow.pyfunc.load_model(uri)
    answer = served.predict(pd.DataFrame({"num": [2, 2], "seed": [3, 3], "psi": [1.0, 0.0]}))
    images = decode_png_column(answer)                                     # [4, 8, 8, 3]
    np.testing.assert_array_equal(images[:2], generate_images(G, 2, seed=3))
    np.testing.assert_array_equal(images[2:], truncated[:2])


def test_a_killed_worker_restarts_a_stylegan_wgan_gp_stage_from_its_newest_checkpoint(tiny_root):
    cfg = worker_config(tiny_config(tiny_root, *STYLE, "optim.loss=wgan-gp", "schedule.stabilize_kimg=1.2"))
    job = StageJob(cfg, "stylekill", 4, dataset_url(cfg))
    out, killed = run_stage_killing_rank1(job, tiny_root)

    first, second = starts(tiny_root, "stylekill", 4)
    assert first["source"] == "fresh" and second["source"] == "checkpoint"
    assert second["nimg"] > 0 and second["nimg"] >= killed["checkpoints"][0]
    assert out["nimg"] == 1200
    ranks = st.read_json(st.join(job.log_url, "ranks.json"))["ranks"]
    assert ranks[0]["params"] == ranks[1]["params"]                      # G (w_avg included), D, G_ema in sync
    final = load_checkpoint(st.join(job.stages_url, job.name, f"nimg-{1200:010d}"))
    assert final["config"]["optim"]["loss"] == "wgan-gp" and final["G_ema"]["w_avg"].abs().sum() > 0
