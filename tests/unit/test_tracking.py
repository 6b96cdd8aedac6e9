"""Where runs are tracked (absolute URIs only), failing fast on an unreachable server, idempotent parent/stage runs."""
from __future__ import annotations

import socket
import time

import pytest

from pggan.config import load_config
from pggan.tracking import client, runs


def tiny_config(root, *overrides):
    return load_config("tiny.yaml", [f"storage.root={root}", *overrides])


@pytest.fixture
def no_tracking_env(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]                                # nothing listens once the socket is closed


def test_default_tracking_uri_is_an_absolute_sqlite_file_under_the_root(tmp_path, monkeypatch, no_tracking_env):
    monkeypatch.chdir(tmp_path)
    uri = client.resolve_tracking_uri(tiny_config("./data"))
    assert uri == f"sqlite:///{tmp_path}/data/mlflow.db"
    assert uri.startswith("sqlite:////")                        # absolute: workers with another cwd agree


def test_tracking_uri_from_config_wins_and_relative_sqlite_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert client.resolve_tracking_uri(tiny_config("./data", "tracking.uri=sqlite:///x/m.db")) == \
        f"sqlite:///{tmp_path}/x/m.db"
    assert client.resolve_tracking_uri(tiny_config("./data")) == "http://from-env:5000"


def test_object_storage_root_without_a_tracking_uri_says_to_set_one(no_tracking_env):
    with pytest.raises(client.TrackingError, match="tracking.uri"):
        client.resolve_tracking_uri(tiny_config("s3://bucket/pggan"))


@pytest.mark.parametrize("uri", ["file:///tmp/mlruns", "some/relative/dir"])
def test_file_store_and_bare_paths_are_refused_with_a_working_alternative(uri):
    with pytest.raises(client.TrackingError, match="sqlite:///"):
        client.absolute_tracking_uri(uri)


def test_unreachable_server_fails_fast_with_a_clear_message_and_no_password():
    uri = f"http://alice:hunter2@127.0.0.1:{closed_port()}"
    start = time.monotonic()
    with pytest.raises(client.TrackingError) as info:
        client.check_tracking_reachable(uri, timeout_s=3)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "not reachable" in message and "127.0.0.1" in message and "mlflow server" in message
    assert "hunter2" not in message


def test_resumed_pipeline_run_continues_its_parent_and_stage_runs(tmp_path, no_tracking_env):
    cfg = tiny_config(tmp_path, "storage.secret_access_key=topsecret")
    parent = runs.start_parent_run(cfg, "run-a")
    stage = runs.start_stage_run(cfg, parent, 4)
    runs.finish_run(cfg, stage, "FAILED")
    runs.finish_run(cfg, parent, "FAILED")

    assert runs.start_parent_run(cfg, "run-a") == parent          # the resumed run: same parent, not a duplicate
    assert runs.start_stage_run(cfg, parent, 4) == stage
    assert runs.start_stage_run(cfg, parent, 8) != stage          # one child per stage
    assert runs.start_parent_run(cfg, "run-b") != parent

    mlflow_client = client.client_for(client.resolve_tracking_uri(cfg))
    run = mlflow_client.get_run(parent)
    assert run.info.status == "RUNNING"
    assert run.data.params["data.resolution"] == "8"
    assert not any("topsecret" in v for v in run.data.params.values())
    children = mlflow_client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert sorted(c.data.tags[runs.TAG_STAGE] for c in children) == ["4", "8"]
    assert mlflow_client.get_run(stage).data.params["stage.resolution"] == "4"


def test_stage_metrics_name_each_swd_level_by_its_resolution():
    result = {"swd": {"32": 5.0, "16": 7.0}, "swd_avg": 6.0, "real_swd": {"32": 2.0, "16": 3.5}, "real_swd_avg": 2.75,
              "swd_ratio": 6.0 / 2.75, "swd_ratio_levels": {"32": 2.5, "16": 2.0}, "ms_ssim": 0.3,
              "num_reals": 256, "num_fakes": 256, "note": "x"}
    flat = runs.stage_metrics(32, result)
    assert flat == {"swd_32": 5.0, "swd_16": 7.0, "swd_avg": 6.0, "real_swd_32": 2.0, "real_swd_16": 3.5,
                    "real_swd_avg": 2.75, "swd_ratio": pytest.approx(6.0 / 2.75), "swd_ratio_32": 2.5,
                    "swd_ratio_16": 2.0, "ms_ssim": 0.3, "num_reals": 256.0, "num_fakes": 256.0}


def test_stage_metrics_of_an_older_run_json_keep_their_names():
    flat = runs.stage_metrics(32, {"swd_levels": [5.0, 7.0], "swd_avg": 6.0, "ms_ssim": 0.3})
    assert flat == {"swd_32": 5.0, "swd_16": 7.0, "swd_avg": 6.0, "ms_ssim": 0.3}


def test_credentials_are_removed_from_urls_in_text():
    assert client.redact("see http://bob:pw@host:5000/x and s3://k:s@b") == "see http://***@host:5000/x and s3://***@b"
    assert client.redact("s3://AKIA:wJal/K7MD+bPx@minio:9000/b") == "s3://***@minio:9000/b"   # "/" in an AWS secret
    assert client.redact("https://token@host/x s3://bucket/key@v2 http://h:5000/x") == \
        "https://***@host/x s3://bucket/key@v2 http://h:5000/x"                          # no credentials: as is
