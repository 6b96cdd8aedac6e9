"""What users see from the command line: `pggan status RUN_ID`, and error lines of `pggan ingest` / `pggan tune`
that start with the command they typed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from pggan import run_manifest
from pggan import storage as st
from pggan.config import load_config
from pggan.stage_log import append_jsonl, stage_log_url

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pggan(*args: str, cwd: str = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def half_done_run(root: str) -> str:
    """A tiny run as full_run leaves it mid-way: 4x4 done and evaluated, 8x8 training (a checkpoint and a tick)."""
    cfg = load_config("tiny.yaml", [f"storage.root={root}"])
    run = run_manifest.new_run(cfg, "r1", [4, 8], f"file://{root}/datasets/synthetic-128-16-s0-8")
    final4 = st.join(run_manifest.run_url(root, "r1"), "stages", "r0004", "nimg-0000000208")
    run_manifest.mark_stage(run, 4, "done", checkpoint=final4, nimg=208, train_seconds=41.7,
                            samples=st.join(run_manifest.run_url(root, "r1"), "samples", "r0004.png"),
                            metrics={"swd_levels": [12.3456, 20.0], "swd_avg": 16.1728, "ms_ssim": 0.4321,
                                     "num_images": 64})
    run_manifest.mark_stage(run, 8, "running")
    run["status"] = "running"
    run_manifest.save_run(root, run)
    stage8 = os.path.join(root, "runs", "r1", "stages", "r0008")
    os.makedirs(os.path.join(stage8, "nimg-0000000112"))
    with open(os.path.join(stage8, "nimg-0000000112", "meta.json"), "w") as f:
        json.dump({"stage_nimg": 112}, f)
    os.makedirs(os.path.join(stage8, "nimg-0000000128"))                 # being written: no meta.json yet
    append_jsonl(st.join(stage_log_url(root, "r1", 8), "metrics.jsonl"), {"kimg": 0.112, "d_loss": 0.5})
    return st.join(run_manifest.run_url(root, "r1"), "stages", "r0008", "nimg-0000000112")


def test_status_shows_each_stage_its_images_metrics_and_checkpoints(tmp_path):
    newest8 = half_done_run(str(tmp_path))
    out = pggan("status", "r1", "--root", str(tmp_path))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("run r1: running")
    row4 = next(line for line in text.splitlines() if line.strip().startswith("4x4 "))
    row8 = next(line for line in text.splitlines() if line.strip().startswith("8x8 "))
    assert row4.split()[:5] == ["4x4", "done", "0.208", "/", "0.2"] and "16.17" in row4 and "0.432" in row4
    assert row8.split()[:5] == ["8x8", "running", "0.112", "/", "0.4"]    # from its last tick
    assert f"4x4 final checkpoint: {tmp_path.as_uri()}/runs/r1/stages/r0004/nimg-0000000208" in text
    assert f"8x8 newest checkpoint: {newest8}" in text
    assert "12.35 20.00" in text and "registration: pending" in text


def test_status_json_has_the_same_facts_for_scripts(tmp_path):
    half_done_run(str(tmp_path))
    out = pggan("status", "r1", "--set", f"storage.root={tmp_path}", "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    stages = {s["resolution"]: s for s in status["stages"]}
    assert (status["run_id"], status["status"]) == ("r1", "running")
    assert (stages[4]["nimg"], stages[4]["total_nimg"], stages[4]["metrics"]["swd_avg"]) == (208, 200, 16.1728)
    assert (stages[8]["status"], stages[8]["nimg"], stages[8]["total_nimg"]) == ("running", 112, 400)


def test_status_of_an_unknown_run_is_one_line_naming_the_root(tmp_path):
    out = pggan("status", "nope", "--root", str(tmp_path))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("pggan status: error: no run 'nope' under ") and len(out.stderr.splitlines()) == 1


def test_ingest_and_tune_errors_start_with_the_command_typed(tmp_path):
    bad = pggan("ingest", "--source", str(tmp_path), "--root", str(tmp_path), "--resolution", "12")
    assert bad.returncode == 2 and bad.stderr.startswith("pggan ingest: error: data.resolution")
    empty = tmp_path / "empty"
    empty.mkdir()
    none = pggan("ingest", "--source", str(empty), "--root", str(tmp_path / "out"), "--resolution", "8")
    assert none.returncode == 1 and none.stderr.startswith("pggan ingest: error: "), none.stderr
    tune = pggan("tune", "--num-samples", "0", "--set", f"storage.root={tmp_path}")
    assert tune.returncode == 2 and tune.stderr.startswith("pggan tune: error: --num-samples 0")
    script = subprocess.run([sys.executable, "pipelines/ingest.py", "--resolution", "12"], cwd=REPO,
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": REPO})
    assert script.returncode == 2 and script.stderr.startswith("ingest: error: data.resolution")
