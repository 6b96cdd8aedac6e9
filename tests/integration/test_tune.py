"""A 2-trial schedule sweep on the tiny config, end to end as a user runs it (a private local Ray, 4 logical CPUs on a
2-core machine): each trial is a staged run of its own, the best config loads with load_config and holds the best
trial's lengths, and MLflow shows one sweep run with both trials nested in it, each with its SWD."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pggan.config import load_config
from train_helpers import files_containing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]


def sweep_command(root: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "pipelines/tune_schedule.py", "--config", "tiny.yaml",
            "--set", f"storage.root={root}", "--set", "scaling.num_workers=1", "--set", "scaling.num_cpus=4",
            "--fade-kimg", "0.03:0.06", "--stabilize-kimg", "0.03:0.06", "--name", name, *extra]


def clean_env() -> dict[str, str]:
    """A private local Ray and the sweep's own SQLite tracking, whatever this shell points at."""
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("MLFLOW_")}


def run_sweep(root: Path, name: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(sweep_command(root, name, *extra), cwd=REPO, env=clean_env(), capture_output=True,
                          text=True, timeout=1100)


def secret_sets(secret: str) -> list[str]:
    """S3 keys on the command line, as a user gives them (a local root does not use them)."""
    return ["--set", f"storage.access_key_id=ID{secret}", "--set", f"storage.secret_access_key={secret}"]


def test_two_trial_sweep_writes_the_best_config_and_nests_the_trials_in_mlflow(tmp_path):
    root, secret = tmp_path / "root", f"SENTINEL{uuid.uuid4().hex}"
    out = run_sweep(root, "sw", "--num-samples", "2", *secret_sets(secret))
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-6000:]
    # The keys are nowhere: not in the output, nor under the root (Tune's experiment state and trial configs,
    # sweep.json, trials.json, best.yaml, the trials' runs, the MLflow database and artifacts).
    assert secret not in log and files_containing(secret, root) == []
    assert "[tune] sweep sw: 2 trials, 2 at a time" in log        # 1 worker x 0.5 CPU + 1 + 0.01 per trial, 4 CPUs

    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    experiment = client.get_experiment_by_name("pggan").experiment_id
    sweeps = client.search_runs([experiment], "tags.`pggan.kind` = 'sweep' and tags.`pggan.sweep` = 'sw'")
    assert len(sweeps) == 1 and sweeps[0].info.status == "FINISHED"
    sweep_id = sweeps[0].info.run_id
    trials = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{sweep_id}'")
    assert sorted(t.info.run_name for t in trials) == ["sw-t0", "sw-t1"]
    for t in trials:                                             # every trial reached at least its first stage
        assert t.data.metrics["swd_avg"] > 0 and t.data.metrics["sweep.kimg_shown"] > 0
        assert t.data.tags["pggan.sweep.outcome"] in ("completed", "stopped"), t.data.tags
        assert {"search.schedule.fade_kimg", "search.schedule.stabilize_kimg"} <= set(t.data.params)
    completed = [t for t in trials if t.data.tags["pggan.sweep.outcome"] == "completed"]
    assert completed, "ASHA never stops the first trial to reach a rung: at least one completes"
    winner = min(completed, key=lambda t: t.data.metrics["swd_avg"])
    assert sweeps[0].data.metrics["best_swd_avg"] == pytest.approx(winner.data.metrics["swd_avg"])
    stages = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{winner.info.run_id}'")
    assert sorted(s.data.tags["pggan.stage"] for s in stages) == ["4", "8"]

    best = load_config(root / "sweeps" / "sw" / "best.yaml")
    assert best.schedule.fade_kimg == float(winner.data.params["search.schedule.fade_kimg"])
    assert best.schedule.stabilize_kimg == float(winner.data.params["search.schedule.stabilize_kimg"])
    assert 0.03 <= best.schedule.fade_kimg <= 0.06 and best.tracking.register is True   # the user's, not the trials'
    manifest = json.loads((root / "runs" / winner.info.run_name / "run.json").read_text())
    assert manifest["status"] == "done" and manifest["config"]["schedule"]["fade_kimg"] == best.schedule.fade_kimg


def test_a_sweep_whose_driver_died_resumes_without_retraining_finished_stages(tmp_path):
    root, log_path, secret = tmp_path / "root", tmp_path / "first.log", f"SENTINEL{uuid.uuid4().hex}"
    # The keys are on the first command line only: the resume runs without them, as with keys in the environment.
    first = sweep_command(root, "rs", "--num-samples", "1", "--scheduler", "none", *secret_sets(secret))
    with open(log_path, "w") as log:
        driver = subprocess.Popen(first, cwd=REPO, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 900
        while "stage 4x4 done" not in log_path.read_text() and driver.poll() is None:
            assert time.monotonic() < deadline, log_path.read_text()[-4000:]
            time.sleep(0.25)
    finally:
        if driver.poll() is None:
            os.kill(driver.pid, signal.SIGKILL)                   # the driver dies; its local Ray goes with it
        driver.wait()
    assert "stage 4x4 done" in log_path.read_text(), log_path.read_text()[-4000:]
    first_stage_starts = (root / "runs" / "rs-t0" / "logs" / "r0004" / "resume.jsonl").read_text().splitlines()

    out = run_sweep(root, "rs", "--num-samples", "1", "--scheduler", "none")
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-6000:]
    assert "resuming sweep rs" in log and "stage 4x4: done already" in log
    run = json.loads((root / "runs" / "rs-t0" / "run.json").read_text())
    assert run["status"] == "done"
    assert (root / "runs" / "rs-t0" / "logs" / "r0004" / "resume.jsonl").read_text().splitlines() == \
        first_stage_starts                                       # stage 4 was not trained again
    load_config(root / "sweeps" / "rs" / "best.yaml")
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    experiment = client.get_experiment_by_name("pggan").experiment_id
    sweeps = client.search_runs([experiment], "tags.`pggan.kind` = 'sweep'")
    trials = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{sweeps[0].info.run_id}'")
    assert len(sweeps) == 1 and [t.info.run_name for t in trials] == ["rs-t0"]   # continued, not duplicated
    assert secret not in log_path.read_text() and files_containing(secret, root) == []
