"""Faults with real processes: a Ray Train worker SIGKILLed mid-stage, the driver SIGKILLed mid-run, and a NaN
loss. Each time training continues from the newest checkpoint (never from zero), and what finished is kept."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from pggan import storage as st
from pggan.dataset import dataset_url
from pipelines.full_run import main
from pipelines.runtime import worker_config
from pipelines.train_stage import FAULT_ENV, StageJob, run_stage
from train_helpers import REPO, checkpoint_nimgs, error_line, run_dir, starts, tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def wait_for(what: str, ready, timeout_s: float = 600.0, poll_s: float = 0.1, proc=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited ({proc.returncode}) before {what}:\n{output_of(proc)[-3000:]}")
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def run_stage_killing_rank1(job: StageJob, root: str) -> tuple[dict, dict]:
    """Run `job` while SIGKILLing its rank-1 worker once two checkpoints exist. Returns (the stage's result,
    {"checkpoints": the checkpoints at the kill, "pid": the killed pid})."""
    killed: dict = {}

    def kill_rank1_after_two_checkpoints() -> None:
        wait_for("two checkpoints", lambda: len(checkpoint_nimgs(root, job.run_id, job.res)) >= 2)
        killed["checkpoints"] = checkpoint_nimgs(root, job.run_id, job.res)
        killed["pid"] = starts(root, job.run_id, job.res)[-1]["pids"][1]
        os.kill(killed["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_rank1_after_two_checkpoints, daemon=True)
    killer.start()
    out = run_stage(job)
    killer.join(timeout=5)
    return out, killed


def test_a_killed_worker_restarts_the_stage_from_its_newest_checkpoint(tiny_root):
    cfg = worker_config(tiny_config(tiny_root, "schedule.stabilize_kimg=2.4"))
    job = StageJob(cfg, "killworker", 4, dataset_url(cfg))
    out, killed = run_stage_killing_rank1(job, tiny_root)

    first, second = starts(tiny_root, "killworker", 4)
    assert first["source"] == "fresh" and killed["pid"] in first["pids"]
    assert second["source"] == "checkpoint" and killed["pid"] not in second["pids"]
    # Resumed from a checkpoint that existed at the kill (the newest registered one), not from zero.
    assert second["nimg"] > 0 and second["nimg"] >= killed["checkpoints"][0]
    assert second["nimg"] in checkpoint_nimgs(tiny_root, "killworker", 4) + killed["checkpoints"]
    assert out["nimg"] == 2400
    ranks = st.read_json(st.join(job.log_url, "ranks.json"))["ranks"]
    assert ranks[0]["params"] == ranks[1]["params"]                  # still in sync after the restart


def full_run_process(root: str, run_id: str, *sets: str) -> subprocess.Popen:
    """full_run.py as a user starts it, in its own session; its output goes to a file (a pipe could fill up)."""
    cmd = [sys.executable, "pipelines/full_run.py", "--config", "tiny.yaml", "--run-id", run_id,
           "--set", f"storage.root={root}", *[a for s in sets for a in ("--set", s)]]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", FAULT_ENV)}
    log = open(os.path.join(root, f"{run_id}-{time.monotonic_ns()}.log"), "w+")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    proc.log = log
    return proc


def output_of(proc: subprocess.Popen) -> str:
    proc.log.seek(0)
    return proc.log.read()


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the driver, its process group and every process it started (its private Ray included)."""
    try:
        family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def stage_status(root: str, run_id: str, res: int) -> str | None:
    path = os.path.join(run_dir(root, run_id), "run.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["stages"][str(res)]["status"]


def test_a_killed_driver_resumes_at_the_right_stage_and_images_seen(tiny_root):
    # Stage 8: 0.2 kimg fade + 1.2 kimg stabilize, a checkpoint every 0.1 kimg. The driver dies right after the
    # stage's second checkpoint (208 images), with ~1.2 kimg (~75 steps and 10 checkpoints) still to go.
    sets = ("schedule.stabilize_kimg_per_res={8: 1.2}",)
    proc = full_run_process(tiny_root, "killdriver", *sets)
    try:
        wait_for("stage 4 done", lambda: stage_status(tiny_root, "killdriver", 4) == "done", proc=proc)
        wait_for("two checkpoints of stage 8", lambda: len(checkpoint_nimgs(tiny_root, "killdriver", 8)) >= 2,
                 proc=proc)
    finally:
        kill_tree(proc)
    at_kill = checkpoint_nimgs(tiny_root, "killdriver", 8)
    assert stage_status(tiny_root, "killdriver", 8) == "running"

    again = full_run_process(tiny_root, "killdriver", *sets)
    again.wait(timeout=600)
    output = output_of(again)
    assert again.returncode == 0, output[-3000:]
    assert "stage 4x4: done already" in output
    assert len(starts(tiny_root, "killdriver", 4)) == 1              # stage 4 was not trained twice
    resumed = starts(tiny_root, "killdriver", 8)[-1]
    assert resumed["source"] == "checkpoint" and resumed["nimg"] in at_kill and resumed["nimg"] > 0
    with open(os.path.join(run_dir(tiny_root, "killdriver"), "run.json")) as f:
        run = json.load(f)
    assert run["status"] == "done" and 1400 <= run["stages"]["8"]["nimg"] < 1400 + 16   # whole minibatches


def test_a_nan_loss_rolls_back_retries_then_fails_in_one_line_keeping_finished_stages(tiny_root, monkeypatch,
                                                                                       capsys):
    monkeypatch.setenv(FAULT_ENV, "8:250")                          # NaN from 250 images into stage 8 on
    code = main(["--config", "tiny.yaml", "--set", f"storage.root={tiny_root}", "--set", "scaling.max_failures=1",
                 "--run-id", "nan"])
    assert code == 1
    err = error_line(capsys.readouterr().err)
    assert "stage 8x8 failed after 2 attempt(s)" in err and "NonFiniteLossError" in err and "--run-id nan" in err
    with open(os.path.join(run_dir(tiny_root, "nan"), "run.json")) as f:
        run = json.load(f)
    assert run["status"] == "failed" and run["stages"]["4"]["status"] == "done"
    assert run["stages"]["8"]["status"] == "running" and "non-finite" in run["stages"]["8"]["error"]
    first, retry = starts(tiny_root, "nan", 8)                       # max_failures=1: two attempts in all
    assert first["source"] == "grown"
    assert retry["source"] == "checkpoint" and 0 < retry["nimg"] < 250   # rolled back to the last good state
