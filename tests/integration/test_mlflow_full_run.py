"""End to end against a real `mlflow server`: after a tiny full run the registry holds the version with its aliases
and the parent/child runs hold the curves and images; rerunning the run id continues the same parent; an
unreachable tracking server stops the run before anything trains."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from pggan.tracking import runs
from pggan.tracking.client import client_for
from pggan.tracking.registry import ALIAS_CHAMPION, ALIAS_NEWEST

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CURVES = ("d_loss", "g_loss", "gp", "wdist", "drift", "alpha", "kimg", "img_per_s", "lr")


def full_run(root, tracking_uri: str, run_id: str, *sets: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "pipelines/full_run.py", "--config", "tiny.yaml", "--run-id", run_id,
           "--set", f"storage.root={root}", "--set", f"tracking.uri={tracking_uri}", *sum((["--set", s] for s in sets), [])]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def parent_and_children(client, experiment: str, run_id: str):
    exp = client.get_experiment_by_name(experiment)
    parents = client.search_runs([exp.experiment_id], f"tags.`{runs.TAG_RUN_ID}` = '{run_id}' and "
                                                      f"tags.`{runs.TAG_KIND}` = 'pipeline'")
    assert len(parents) == 1, [p.info.run_id for p in parents]
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    return parents[0], {int(c.data.tags[runs.TAG_STAGE]): c for c in children}


def image_keys(client, run_id: str) -> set[str]:
    return {f.path.split("/")[-1].split("+")[0] for f in client.list_artifacts(run_id, "images")}


def test_tiny_full_run_fills_parent_and_stage_runs_and_registers_the_generator(tracked_full_run):
    """The session's tiny run (conftest.tracked_full_run: full_run's main() with tracking.uri at the session's
    MLflow server, a fresh experiment and model name; test_full_run.py checks its manifest), then the same
    command again as a user reruns it."""
    done = tracked_full_run
    name, experiment, run_id, url = done["model"], done["experiment"], done["run_id"], done["tracking_uri"]
    assert done["code"] == 0, (done["stdout"][-3000:], done["stderr"][-3000:])

    client = client_for(url)
    parent, stages = parent_and_children(client, experiment, run_id)
    assert parent.info.status == "FINISHED" and sorted(stages) == [4, 8]
    assert parent.data.params["data.resolution"] == "8"
    assert {"swd_avg", "swd_ratio", "real_swd_avg", "num_reals", "num_fakes", "ms_ssim"} <= set(parent.data.metrics)
    assert {f.path for f in client.list_artifacts(parent.info.run_id)} >= {"run.json", "config.yaml", "images"}
    assert "samples" in image_keys(client, parent.info.run_id)
    for res, child in stages.items():
        assert child.info.status == "FINISHED"
        for curve in CURVES:
            assert len(client.get_metric_history(child.info.run_id, curve)) >= 2, (res, curve)
        assert {"swd_avg", f"swd_{res}", f"real_swd_{res}", "swd_ratio", f"swd_ratio_{res}", "ms_ssim"} <= \
            set(child.data.metrics)
        assert {"grids", "samples_final"} <= image_keys(client, child.info.run_id)

    newest = client.get_model_version_by_alias(name, ALIAS_NEWEST)
    assert client.get_model_version_by_alias(name, ALIAS_CHAMPION).version == newest.version == "1"
    assert float(newest.tags["swd_avg"]) == pytest.approx(parent.data.metrics["swd_avg"])
    assert float(newest.tags["swd_ratio"]) == pytest.approx(parent.data.metrics["swd_ratio"])
    assert (newest.tags["pggan.resolution"], newest.tags["pggan.eval_num_images"], newest.tags["pggan.eval_seed"]) \
        == ("8", "64", "0")
    assert newest.tags["pggan.dataset"] == "synthetic-128-16-s0-8"

    sets = [s for s in done["sets"] if not s.startswith("tracking.uri=")]
    again = full_run(done["root"], url, run_id, *sets)                 # a finished run id, run again
    assert again.returncode == 0, again.stderr[-3000:]
    same_parent, same_stages = parent_and_children(client, experiment, run_id)
    assert same_parent.info.run_id == parent.info.run_id
    assert {r: c.info.run_id for r, c in same_stages.items()} == {r: c.info.run_id for r, c in stages.items()}
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["1"]   # not registered twice


def test_unreachable_tracking_server_stops_the_run_before_training(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = full_run(tmp_path / "root", f"http://127.0.0.1:{port}", "nope", timeout=300)
    assert done.returncode != 0
    assert "not reachable" in done.stderr and f"127.0.0.1:{port}" in done.stderr
    assert not (tmp_path / "root" / "runs" / "nope" / "stages").exists()
