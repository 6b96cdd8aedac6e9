"""Integration fixtures for training: one storage root per session with the tiny data set ingested once, and one
tiny full run tracked on the session's MLflow server, whose results several tests check."""
from __future__ import annotations

import contextlib
import io
import os
import uuid
from typing import Iterator

import pytest

from train_helpers import tiny_config  # tests/integration is on sys.path


@pytest.fixture(scope="session")
def tiny_root(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A storage root (absolute path) holding the tiny data set (4x4, 8x8 levels), shared by the training tests;
    each test uses its own run id under it."""
    from pipelines.ingest import ingest

    root = str(tmp_path_factory.mktemp("pggan-root"))
    ingest(tiny_config(root))
    yield root


@pytest.fixture(scope="session")
def tracked_full_run(tiny_root: str, mlflow_server) -> dict:
    """`full_run.py --config tiny.yaml --run-id full` (stages 4 and 8) under tiny_root on the session's Ray, tracked
    on the session's MLflow server under a fresh experiment and model name: the orchestrator tests
    (test_full_run.py) and the MLflow end-to-end test (test_mlflow_full_run.py) check what this one run left,
    instead of training two (each costs minutes here). S3 keys are given on its command line as a user would
    (sentinel values, unused by a local root): test_secrets.py looks for them everywhere the run wrote, and the
    reruns of the other tests leave them out, as a resume with the keys in the environment does. Returns its exit
    code, stdout, stderr, the sentinel `secret` and the --set list that a rerun of it must repeat."""
    from pipelines.full_run import main

    tag = uuid.uuid4().hex[:6]
    run = {"root": tiny_root, "run_id": "full", "model": f"pggan-e2e-{tag}", "experiment": f"e2e-{tag}",
           "tracking_uri": mlflow_server.url, "secret": f"SENTINEL{uuid.uuid4().hex}"}
    run["sets"] = [f"tracking.uri={mlflow_server.url}", f"tracking.model_name={run['model']}",
                   f"tracking.experiment={run['experiment']}"]
    argv = ["--config", "tiny.yaml", "--set", f"storage.root={tiny_root}", "--run-id", "full",
            *[a for s in run["sets"] for a in ("--set", s)],
            "--set", f"storage.access_key_id=ID{run['secret']}", "--set", f"storage.secret_access_key={run['secret']}"]
    out, err = io.StringIO(), io.StringIO()
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)      # the URI comes from the config, as in a clean shell
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run["code"] = main(argv)
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    run["stdout"], run["stderr"] = out.getvalue(), err.getvalue()
    return run
