"""S3 keys given on the command line are never printed, stored or logged: the session's tiny full run
(conftest.tracked_full_run) got sentinel keys with --set; nothing it wrote or printed holds them. The sweep's
counterpart is in test_tune.py (its sweeps get sentinel keys too)."""
from __future__ import annotations

import json
import os

import pytest

from train_helpers import files_containing, run_dir

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_keys_given_to_a_full_run_are_in_no_output_file_or_mlflow_record(tracked_full_run, mlflow_server):
    done, secret = tracked_full_run, tracked_full_run["secret"]
    assert done["code"] == 0, (done["stdout"][-3000:], done["stderr"][-3000:])
    assert secret not in done["stdout"] + done["stderr"]
    # The storage root (data set, run.json, checkpoints, logs, samples) and the MLflow server's store (SQLite
    # database with params, tags and registry; artifacts: config.yaml, run.json, the logged model; its log).
    assert files_containing(secret, done["root"], mlflow_server.root) == []
    import ray

    if ray.is_initialized():                       # what Ray's processes logged (dashboard, workers, Train)
        session = ray._private.worker.global_worker.node.get_session_dir_path()
        assert files_containing(secret, os.path.join(session, "logs")) == []

    hint = next(line for line in done["stdout"].splitlines() if "resume with:" in line)
    assert "--run-id full" in hint and "storage.secret_access_key" in hint and "AWS_SECRET_ACCESS_KEY" in hint
    with open(os.path.join(run_dir(done["root"], "full"), "run.json")) as f:
        run = json.load(f)
    assert "storage.secret_access_key=***" in run["invocations"][0]["argv"]
    assert run["config"]["storage"]["secret_access_key"] == "***"
