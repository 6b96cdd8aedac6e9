"""A run that stops early closes its MLflow runs (FAILED, or KILLED when interrupted) and a rerun reopens them; a
failed final registration is recorded in run.json, exits 1 saying how to retry, and a rerun does only that step.
Real MLflow (SQLite file) and real checkpoints; no Ray: with every stage trained, a rerun needs none."""
from __future__ import annotations

import os
import socket

import pytest

from pggan import run_manifest
from pggan import storage as st
from pggan.checkpoint import capture_rng, dir_name, save_checkpoint, training_state
from pggan.config import load_config
from pggan.tracking.client import TrackingError, client_for, resolve_tracking_uri
from pggan.tracking.hooks import KEY_PARENT, MlflowRunHooks
from pggan.tracking.registry import ALIAS_NEWEST
from pggan.tracking.runs import TAG_ERROR, finish_run
from pggan.stage_nets import build_stage
from pipelines.full_run import failure_recorded, main
from pipelines.runtime import absolute_config


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    """One MLflow database for the module (creating one takes seconds); each test has its own run ids."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def tiny(root, db: str, *overrides: str):
    return absolute_config(load_config("tiny.yaml", [f"storage.root={root}", f"tracking.uri={db}", *overrides]))


def client(cfg):
    return client_for(resolve_tracking_uri(cfg))


def training_stage_8(cfg, run_id: str):
    """A run as full_run leaves it while stage 8 trains: stage 4 done (its MLflow run FINISHED), the parent and
    the stage-8 run open."""
    hooks = MlflowRunHooks(cfg, attempts=1, backoff_s=0)
    run = run_manifest.new_run(cfg, run_id, [4, 8], "file:///data")
    run["tracking"].update(hooks.start_run(run))
    stage4 = hooks.start_stage(run, 4)
    finish_run(cfg, stage4)
    run_manifest.mark_stage(run, 4, "done", tracking_id=stage4, checkpoint="file:///c4", nimg=400)
    run_manifest.mark_stage(run, 8, "running", tracking_id=hooks.start_stage(run, 8))
    run_manifest.save_run(cfg.storage.root, run, cfg.storage)
    return run, hooks


@pytest.mark.parametrize("error, status, run_status", [
    (RuntimeError("ActorDiedError: the worker node was lost"), "FAILED", "failed"),
    (KeyboardInterrupt(), "KILLED", "interrupted"),
    (SystemExit(0), "KILLED", "interrupted"),                 # Ctrl-C as Ray Train's SIGINT handler reports it
])
def test_a_run_that_stops_early_closes_its_open_mlflow_runs_and_says_why(tmp_path, db, error, status,
                                                                         run_status):
    cfg = tiny(tmp_path, db)
    run, hooks = training_stage_8(cfg, f"stops-{status}")
    with pytest.raises(type(error)):                                     # the cause still reaches the caller
        with failure_recorded(cfg, run, hooks, log=lambda line: None):
            raise error

    parent = client(cfg).get_run(run["tracking"][KEY_PARENT])
    stage8 = client(cfg).get_run(run_manifest.stage(run, 8)["tracking_id"])
    assert parent.info.status == stage8.info.status == status
    assert client(cfg).get_run(run_manifest.stage(run, 4)["tracking_id"]).info.status == "FINISHED"   # kept as it was
    assert type(error).__name__ in parent.data.tags[TAG_ERROR]
    saved = run_manifest.load_run(cfg.storage.root, f"stops-{status}", cfg.storage)
    assert saved["status"] == run_status and type(error).__name__ in saved["error"]


def test_rerunning_a_failed_run_reopens_its_parent_and_stage_runs_and_finishes_them(tmp_path, db):
    cfg = tiny(tmp_path, db)
    run, hooks = training_stage_8(cfg, "again")
    with pytest.raises(RuntimeError):
        with failure_recorded(cfg, run, hooks, log=lambda line: None):
            raise RuntimeError("NonFiniteLossError: non-finite loss at 8x8")
    parent_id, stage_id = run["tracking"][KEY_PARENT], run_manifest.stage(run, 8)["tracking_id"]

    rerun = MlflowRunHooks(cfg, attempts=1, backoff_s=0)
    assert rerun.start_run(run)[KEY_PARENT] == parent_id                # the same runs, not new ones
    assert rerun.start_stage(run, 8) == stage_id
    for mlflow_id in (parent_id, stage_id):
        reopened = client(cfg).get_run(mlflow_id)
        assert reopened.info.status == "RUNNING" and TAG_ERROR not in reopened.data.tags
    rerun.end_stage(run, 8, stage_id, {"metrics": {"swd_avg": 2.5}, "nimg": 400}, grid=None)
    stage = client(cfg).get_run(stage_id)
    assert stage.info.status == "FINISHED" and stage.data.metrics["swd_avg"] == 2.5


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]                                # nothing listens once the socket is closed


def test_registering_with_the_tracking_server_down_raises_naming_the_server(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")          # MLflow's own retries take minutes
    uri = f"http://127.0.0.1:{closed_port()}"
    hooks = MlflowRunHooks(tiny(tmp_path, uri), attempts=2, backoff_s=0)
    run = run_manifest.new_run(hooks.cfg, "down", [4, 8], "file:///data")
    run["tracking"][KEY_PARENT] = "0123456789abcdef"
    with pytest.raises(TrackingError) as e:
        hooks.end_run(run, "file:///final")
    assert uri in str(e.value) and "2 time(s)" in str(e.value)


def trained_run(cfg, run_id: str) -> str:
    """A run whose stages are all trained (as the last stage leaves run.json), with a real final checkpoint and
    its MLflow runs; returns the final checkpoint's folder."""
    nets = build_stage(cfg.model, cfg.optim, 8, 1e-3, "cpu", init_seed=0)
    state = training_state(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, resolution=8, stage_nimg=400,
                           alpha=1.0, rng=[capture_rng()], config=cfg)
    final = os.path.join(st.split_url(cfg.storage.root)[1], "runs", run_id, "stages", "r0008", dir_name(400))
    save_checkpoint(final, state)
    hooks = MlflowRunHooks(cfg)
    run = run_manifest.new_run(cfg, run_id, [4, 8], "file:///data")
    run["tracking"].update(hooks.start_run(run))
    for res in (4, 8):
        run_manifest.mark_stage(run, res, "running", tracking_id=hooks.start_stage(run, res))
        hooks.end_stage(run, res, run_manifest.stage(run, res)["tracking_id"], {"metrics": {"swd_avg": 3.0}}, grid=None)
        run_manifest.mark_stage(run, res, "done", checkpoint=st.to_url(final), nimg=400, metrics={"swd_avg": 3.0})
    run["status"] = "running"
    run_manifest.save_run(cfg.storage.root, run, cfg.storage)
    return final


def test_a_failed_registration_is_recorded_and_a_rerun_only_registers(tmp_path, db, capsys):
    name = "pggan-retry"
    cfg = tiny(tmp_path, db, f"tracking.model_name={name}")
    final = trained_run(cfg, "reg")
    os.rename(final, final + ".away")                  # the storage holding it is unreachable at the end
    argv = ["--config", "tiny.yaml", "--set", f"storage.root={tmp_path}", "--set", f"tracking.uri={db}",
            "--set", f"tracking.model_name={name}", "--run-id", "reg"]

    assert main(argv) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("full_run: error:")]
    assert len(errors) == 1, errors
    assert "registering the final generator" in errors[0] and "CheckpointError" in errors[0]
    assert "--run-id reg" in errors[0] and "no stage is trained again" in errors[0]
    failed = run_manifest.load_run(cfg.storage.root, "reg", cfg.storage)
    assert failed["status"] == "failed"                                # not "done"
    assert failed["registration"]["status"] == "failed" and "CheckpointError" in failed["registration"]["error"]
    parent_id = failed["tracking"][KEY_PARENT]
    assert client(cfg).get_run(parent_id).info.status == "FAILED"
    assert client(cfg).search_model_versions(f"name = '{name}'") == []

    os.rename(final + ".away", final)
    assert main(argv) == 0
    assert "only the final generator is left to register" in capsys.readouterr().out
    done = run_manifest.load_run(cfg.storage.root, "reg", cfg.storage)
    assert done["status"] == "done" and done["registration"]["status"] == "done" and "error" not in done
    assert done["stages"] == failed["stages"]                           # no stage touched, let alone trained
    assert not os.path.exists(os.path.join(tmp_path, "runs", "reg", "logs"))
    assert done["tracking"]["model_version"] == f"{name}/1"
    assert str(client(cfg).get_model_version_by_alias(name, ALIAS_NEWEST).version) == "1"
    parent = client(cfg).get_run(parent_id)
    assert parent.info.status == "FINISHED" and TAG_ERROR not in parent.data.tags

    assert main(argv) == 0 and "is complete" in capsys.readouterr().out
    assert len(client(cfg).search_model_versions(f"name = '{name}'")) == 1
