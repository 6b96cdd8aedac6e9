"""What a sweep logs to MLflow (base config, best config, trial table) never carries credentials, even inside URLs."""
from __future__ import annotations

import pytest

from pggan.config import load_config
from pggan.tracking import client as tr
from pggan.tracking import sweep as stk

SOURCE = "s3://AKIAEXAMPLEKEY:wJalrXUtn/K7MDENG@minio.local:9000/faces"     # an AWS-style secret holds a "/"
SECRETS = ("AKIAEXAMPLEKEY", "wJalrXUtn", "K7MDENG", "hunter2", "topsecret")


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return load_config("tiny.yaml", [f"storage.root={tmp_path}", f"data.source={SOURCE}",
                                     "storage.endpoint_url=http://admin:hunter2@minio.local:9000",
                                     "storage.secret_access_key=topsecret"])


def artifact_text(cfg, run_id: str, path: str, into) -> str:
    client = tr.client_for(tr.resolve_tracking_uri(cfg))
    with open(client.download_artifacts(run_id, path, str(into))) as f:
        return f.read()


def test_the_sweep_run_logs_its_configs_and_trials_without_credentials(cfg, tmp_path):
    run_id = stk.start_sweep_run(cfg, "sw", {"sweep.schedule.fade_kimg": "0.1..0.4"})
    best_yaml = f"data:\n  source: {SOURCE}\n"
    trials = [{"trial": 0, "run_id": "sw-t0", "error": f"PermissionError: {SOURCE}: access denied"}]
    stk.finish_sweep_run(cfg, run_id, {"swd_avg": 1.5, "run_id": "sw-t0"}, best_yaml, trials)

    for path in ("base_config.yaml", "best.yaml", "trials.json"):
        text = artifact_text(cfg, run_id, path, tmp_path / path)
        assert not [s for s in SECRETS if s in text], (path, text)
        assert "minio.local:9000/faces" in text, path                  # the location itself is kept
