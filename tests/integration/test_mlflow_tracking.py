"""Against a real `mlflow server`: parent/child runs hold the curves, images and artifacts; the rank-0 logger
survives the server going away mid-stage (dropping, never raising) and catches up after a short outage."""
from __future__ import annotations

import logging
import socket
import threading
import time
import uuid

import numpy as np
import pytest

from pggan.config import load_config
from pggan.tracking import runs
from pggan.tracking.client import client_for
from pggan.tracking.stage_logger import MlflowStageLogger

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TICK_METRICS = ("d_loss", "g_loss", "gp", "wdist", "drift", "alpha", "kimg", "img_per_s", "lr")


def server_config(url: str, **tracking: str):
    sets = [f"tracking.uri={url}", f"tracking.experiment=exp-{uuid.uuid4().hex[:8]}"]
    return load_config("tiny.yaml", sets + [f"tracking.{k}={v}" for k, v in tracking.items()]
                       + ["storage.secret_access_key=topsecret"])


def images_logged(client, run_id: str, key: str) -> list[int]:
    """Steps of the step-indexed images logged under `key` (MLflow names them key+step+N+timestamp+...)."""
    names = [f.path.split("/")[-1] for f in client.list_artifacts(run_id, "images")]
    return sorted(int(n.split("+")[2]) for n in names if n.startswith(f"{key}+step+") and n.endswith(".png"))


def test_parent_and_stage_runs_hold_config_curves_grids_and_manifest(mlflow_server):
    cfg = server_config(mlflow_server.url)
    parent = runs.start_parent_run(cfg, "curves")
    stage = runs.start_stage_run(cfg, parent, 8)
    with MlflowStageLogger(cfg.tracking.uri, stage) as logger:
        for tick in range(1, 4):
            logger.log_metrics({k: 0.1 * tick for k in TICK_METRICS}, step_kimg=0.1 * tick)
            logger.log_image(np.full((8, 8, 3), 40 * tick, np.uint8), "grids", step_kimg=0.1 * tick)
    result = {"swd_levels": [4.0], "swd_avg": 4.0, "ms_ssim": 0.25}
    runs.log_stage_result(cfg, parent, stage, 8, result, stage_kimg=0.4, grid=np.zeros((16, 16, 3), np.uint8))
    runs.log_run_artifacts(cfg, parent, {"run_id": "curves", "config": {"storage": {"secret_access_key": "x"}}})

    client = client_for(mlflow_server.url)
    for name in TICK_METRICS:
        assert [m.step for m in client.get_metric_history(stage, name)] == [100, 200, 300], name
    assert images_logged(client, stage, "grids") == [100, 200, 300]
    assert images_logged(client, stage, "samples_final") == [400]
    child = client.get_run(stage)
    assert child.info.status == "FINISHED" and child.data.tags["mlflow.parentRunId"] == parent
    assert child.data.metrics["swd_8"] == 4.0 and child.data.metrics["ms_ssim"] == 0.25

    top = client.get_run(parent)
    assert top.data.metrics["swd_avg"] == 4.0 and images_logged(client, parent, "samples") == [8]
    assert top.data.params["model.latent_dim"] == "16"
    assert not any("topsecret" in v for v in top.data.params.values())
    assert {f.path for f in client.list_artifacts(parent)} >= {"config.yaml", "run.json", "images"}
    manifest = client.download_artifacts(parent, "run.json")
    assert '"***"' in open(manifest).read()


class Proxy:
    """A TCP forwarder on a fixed loopback port in front of the server: close() makes the port refuse
    connections (and cuts open ones), reopen() serves it again - a real outage, not a mock."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.reopen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reopen(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(16)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)           # wakes the blocked accept(); close alone does not
        except OSError:
            pass
        self.listener.close()
        for c in self.conns:
            c.close()
        self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def fail_fast(monkeypatch) -> None:
    """MLflow's own HTTP retries off (a refused connection fails at once), so the logger's retries are what is
    tested and the test is quick. Set only around the outage: the loaded server may answer setup calls slowly."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def steps_of(client, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


def test_logger_drops_records_with_a_warning_when_the_server_goes_away_and_never_blocks(
        mlflow_server, monkeypatch, caplog):
    cfg = server_config(mlflow_server.url)
    stage = runs.start_stage_run(cfg, runs.start_parent_run(cfg, "outage"), 4)
    proxy = Proxy(int(mlflow_server.url.rsplit(":", 1)[1]))
    logger = MlflowStageLogger(proxy.url, stage, attempts=2, backoff_s=0.2, flush_timeout_s=60)
    logger.log_metrics({"d_loss": 1.0}, step_kimg=0.1)
    deadline = time.monotonic() + 120
    client = client_for(mlflow_server.url)
    while steps_of(client, stage, "d_loss") != [100] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert steps_of(client, stage, "d_loss") == [100], "the first record never arrived"

    with monkeypatch.context() as env:
        fail_fast(env)
        proxy.close()                                           # the tracking server is gone mid-stage
        started = time.monotonic()
        for tick in (2, 3):
            logger.log_metrics({"d_loss": 1.0 / tick}, step_kimg=0.1 * tick)
            logger.log_image(np.zeros((4, 4, 3), np.uint8), "grids", step_kimg=0.1 * tick)
        assert time.monotonic() - started < 2.0                 # training is not held up
        with caplog.at_level(logging.WARNING, logger="pggan.tracking.stage_logger"):
            logger.close()                                      # returns; raises nothing

    assert steps_of(client, stage, "d_loss") == [100]
    assert logger.dropped == 4
    assert "Training continues" in caplog.text and "dropped a metrics record at step 200" in caplog.text


def test_logger_retries_through_a_short_outage_and_delivers_everything(mlflow_server, monkeypatch):
    cfg = server_config(mlflow_server.url)
    stage = runs.start_stage_run(cfg, runs.start_parent_run(cfg, "hiccup"), 4)
    proxy = Proxy(int(mlflow_server.url.rsplit(":", 1)[1]))
    with monkeypatch.context() as env:
        fail_fast(env)
        proxy.close()                                           # down when the record is sent ...
        logger = MlflowStageLogger(proxy.url, stage, attempts=6, backoff_s=0.5, flush_timeout_s=120)
        logger.log_metrics({"g_loss": 0.5}, step_kimg=0.2)
        time.sleep(1.0)
        proxy.reopen()                                          # ... and back within the retry window
        logger.close()
    assert steps_of(client_for(mlflow_server.url), stage, "g_loss") == [200]
    assert logger.dropped == 0
