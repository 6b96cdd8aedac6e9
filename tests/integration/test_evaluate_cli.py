"""`pggan evaluate`: one JSON line of SWD by resolution, swd_ratio and MS-SSIM for a stage checkpoint or a
registered model against the data set level of its resolution; the same seed gives the same numbers; bad input is
one line and exit 2."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from pggan.checkpoint import build_generator, capture_rng, load_checkpoint, save_checkpoint, training_state
from pggan.dataset import dataset_url
from pggan.evaluation import evaluate_checkpoint
from pggan.stage_nets import build_stage
from pipelines.cli import main
from train_helpers import REPO, tiny_config  # tests/integration is on sys.path

pytestmark = pytest.mark.integration

NUM = 24                                                         # images per side: enough for every metric, fast


def write_stage_checkpoint(root: str, res: int) -> str:
    """A real (untrained) stage checkpoint of the tiny config where a run keeps them; returns its folder."""
    cfg = tiny_config(root)
    nets = build_stage(cfg.model, cfg.optim, res, 1e-3, "cpu", init_seed=res)
    state = training_state(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, resolution=res, stage_nimg=0,
                           alpha=1.0, rng=[capture_rng()], config=cfg)
    folder = os.path.join(root, "runs", "evaluate-cli", "stages", f"r{res:04d}", "checkpoint_000000")
    save_checkpoint(folder, state)
    return folder


@pytest.fixture(scope="module")
def setup(tiny_root: str) -> dict[str, str]:
    """The tiny data set (levels r0004, r0008) and checkpoints at 8x8 and 16x16 under the same root."""
    return {"root": tiny_root, "dataset": dataset_url(tiny_config(tiny_root)),
            "ckpt8": write_stage_checkpoint(tiny_root, 8), "ckpt16": write_stage_checkpoint(tiny_root, 16)}


def pggan_evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "evaluate", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def json_line(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line, got {stdout!r}"
    return json.loads(lines[0])


def in_process(capsys: pytest.CaptureFixture, *args: str) -> dict:
    assert main(["evaluate", *args]) == 0
    return json_line(capsys.readouterr().out)


def test_a_stage_checkpoint_prints_sane_metrics_that_the_same_seed_repeats(setup, capsys):
    done = pggan_evaluate("--model", setup["ckpt8"], "--dataset", setup["dataset"], "--num-images", str(NUM),
                          "--seed", "3")
    assert done.returncode == 0, done.stderr
    result = json_line(done.stdout)

    assert result["resolution"] == 8 and result["seed"] == 3
    assert result["num_reals"] == result["num_fakes"] == NUM and result["level_size"] == 128
    assert list(result["swd"]) == list(result["real_swd"]) == ["8"]          # keyed by resolution
    assert all(math.isfinite(v) and v >= 0 for v in result["swd"].values())
    assert result["swd_ratio"] == pytest.approx(result["swd_avg"] / result["real_swd_avg"])
    assert result["swd_ratio"] > 1.0                     # an untrained generator is further off than real halves
    assert 0.0 <= result["ms_ssim"] <= 1.0
    # The same seed in another process gives the same numbers, and they are what the stage-end evaluation records.
    stage_end = evaluate_checkpoint(setup["ckpt8"], setup["dataset"], 8, NUM, 3)
    assert {k: result[k] for k in stage_end} == stage_end
    other = in_process(capsys, "--checkpoint", setup["ckpt8"], "--dataset", setup["dataset"],   # the alias
                       "--num-images", str(NUM), "--seed", "4")
    assert other["swd_avg"] != result["swd_avg"]


def test_num_images_defaults_to_the_configs_eval_num_images(setup, capsys):
    result = in_process(capsys, "--model", setup["ckpt8"], "--dataset", setup["dataset"], "--set", "eval.num_images=20")
    assert result["num_reals"] == result["num_fakes"] == 20


def test_a_lower_resolution_compares_against_that_level(setup, capsys):
    result = in_process(capsys, "--model", setup["ckpt8"], "--dataset", setup["dataset"],
                        "--num-images", str(NUM), "--resolution", "4")
    assert result["resolution"] == 4 and list(result["swd"]) == ["4"]
    assert math.isfinite(result["swd_avg"]) and 0.0 <= result["ms_ssim"] <= 1.0


def test_a_registered_model_gives_the_numbers_of_its_checkpoint(setup, tmp_path, capsys, monkeypatch):
    from pggan.tracking.registry import log_and_register_generator
    from pggan.tracking.runs import start_parent_run

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = tiny_config(setup["root"], f"tracking.uri={uri}", "tracking.model_name=pggan-eval")
    G = build_generator(load_checkpoint(setup["ckpt8"]))
    log_and_register_generator(G, cfg, start_parent_run(cfg, "evaluate-cli"), {"swd_avg": 1.0})

    common = ("--dataset", setup["dataset"], "--num-images", str(NUM))
    from_checkpoint = in_process(capsys, "--model", setup["ckpt8"], *common)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)               # the tracking URI comes from the environment
    from_model = in_process(capsys, "--model", "models:/pggan-eval@champion", *common)
    metrics = ("swd", "swd_avg", "swd_ratio", "ms_ssim", "num_reals", "num_fakes", "resolution")
    assert {k: from_model[k] for k in metrics} == {k: from_checkpoint[k] for k in metrics}


# case: (--model, --dataset, --num-images, what the one line on stderr must say)
BAD_INPUT = {
    "no-checkpoint": ("missing", "dataset", NUM, ["no-such-checkpoint", "not a readable checkpoint"]),
    "no-manifest": ("ckpt8", "empty", NUM, ["no manifest.json", "pggan ingest"]),
    "one-image": ("ckpt8", "dataset", 1, ["--num-images 1", "at least 2"]),
    "no-level": ("ckpt16", "dataset", NUM, ["no 16x16 level (r0016)", "r0004, r0008"]),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line_saying_what_to_do_and_exit_2(setup, tmp_path, capsys, case):
    checkpoint, dataset, num, expected = BAD_INPUT[case]
    paths = {**setup, "missing": str(tmp_path / "no-such-checkpoint"), "empty": str(tmp_path)}
    assert main(["evaluate", "--model", paths[checkpoint], "--dataset", paths[dataset],
                 "--num-images", str(num)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert all(text in captured.err for text in expected), captured.err
