"""A schedule sweep in MLflow: one sweep parent run; each trial's pipeline run (with its stage runs) nested under it,
tagged with the trial's searched values, outcome and cost; the best config attached to the parent. What is logged
goes through pggan.tracking.client's scrubbing: no secret keys, no credentials inside URLs."""
from __future__ import annotations

import time
from typing import Any, Mapping

from mlflow.entities import Metric

from pggan.config import PipelineConfig, config_to_dict
from pggan.tracking import runs
from pggan.tracking.client import (check_tracking_reachable, client_for, find_run, find_runs, redact,
                                   resolve_tracking_uri, scrub)
from pggan.tracking.runs import TAG_KIND, TAG_PARENT, TAG_RUN_ID

TAG_SWEEP = "pggan.sweep"               # The sweep name, on the sweep run and on every trial run.
TAG_TRIAL = "pggan.trial"               # The trial index, on trial runs.
TAG_OUTCOME = "pggan.sweep.outcome"     # "completed", "stopped" (by the scheduler, at a stage boundary) or "error".
KIND_SWEEP = "sweep"


def start_sweep_run(cfg: PipelineConfig, sweep: str, params: Mapping[str, str]) -> str:
    """The sweep's parent run (created once; a resumed sweep continues it); also creates the tracking database
    and experiment before trials log concurrently. Returns its MLflow run id."""
    uri = resolve_tracking_uri(cfg)
    check_tracking_reachable(uri)
    client = client_for(uri)
    experiment_id = runs.ensure_experiment(uri, cfg.tracking.experiment)
    tags = {TAG_SWEEP: sweep, TAG_KIND: KIND_SWEEP}
    run_id = find_run(client, experiment_id, tags)
    if run_id is None:
        run_id = client.create_run(experiment_id, run_name=sweep, tags=tags).info.run_id
    elif client.get_run(run_id).info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")
    runs.log_params_once(client, run_id, dict(params))
    client.log_dict(run_id, scrub(config_to_dict(cfg)), "base_config.yaml")
    return run_id


def attach_trial_run(cfg: PipelineConfig, sweep_run_id: str, sweep: str, index: int, run_id: str,
                     values: Mapping[str, Any]) -> str:
    """The trial's pipeline parent run (the one full_run logs to), nested under the sweep run and tagged with the
    trial's searched values (params `search.KEY`). Idempotent. Returns its MLflow run id."""
    mlflow_id = runs.start_parent_run(cfg, run_id)
    client = client_for(resolve_tracking_uri(cfg))
    for key, value in {TAG_PARENT: sweep_run_id, TAG_SWEEP: sweep, TAG_TRIAL: str(index)}.items():
        client.set_tag(mlflow_id, key, value)
    runs.log_params_once(client, mlflow_id, {f"search.{k}": str(v) for k, v in values.items()})
    return mlflow_id


def trial_runs(cfg: PipelineConfig, sweep_run_id: str) -> list[Any]:
    """The sweep's trial runs (MLflow Run objects), oldest first."""
    client = client_for(resolve_tracking_uri(cfg))
    experiment_id = client.get_run(sweep_run_id).info.experiment_id
    return find_runs(client, experiment_id, {TAG_PARENT: sweep_run_id})


def record_trial_outcome(cfg: PipelineConfig, sweep_run_id: str, run_id: str, outcome: str,
                         metrics: Mapping[str, float]) -> None:
    """After the sweep: the trial's outcome tag and cost metrics; a stopped or failed trial's run (and its open
    stage runs) are closed as KILLED / FAILED. Idempotent."""
    client = client_for(resolve_tracking_uri(cfg))
    experiment_id = client.get_run(sweep_run_id).info.experiment_id
    mlflow_id = find_run(client, experiment_id, {TAG_RUN_ID: run_id, TAG_KIND: "pipeline"})
    if mlflow_id is None:                        # the trial failed before full_run reached tracking
        return
    client.set_tag(mlflow_id, TAG_OUTCOME, outcome)
    now = int(time.time() * 1000)
    client.log_batch(mlflow_id, metrics=[Metric(f"sweep.{k}", float(v), now, 0) for k, v in metrics.items()])
    status = {"stopped": "KILLED", "error": "FAILED"}.get(outcome)
    if status is None:
        return
    stages = find_runs(client, experiment_id, {TAG_PARENT: mlflow_id})
    for run in [*stages, client.get_run(mlflow_id)]:
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status=status)


def finish_sweep_run(cfg: PipelineConfig, sweep_run_id: str, best: Mapping[str, Any] | None, best_yaml: str,
                     trials: list[Mapping[str, Any]]) -> None:
    """The sweep's result on its parent run: best_swd_avg and the best trial, best.yaml and the trial table."""
    client = client_for(resolve_tracking_uri(cfg))
    if best is not None:
        client.log_metric(sweep_run_id, "best_swd_avg", float(best["swd_avg"]))
        client.set_tag(sweep_run_id, "pggan.sweep.best_run_id", best["run_id"])
        client.log_text(sweep_run_id, redact(best_yaml), "best.yaml")
    client.log_dict(sweep_run_id, scrub({"trials": list(trials)}), "trials.json")
    client.set_terminated(sweep_run_id, status="FINISHED" if best is not None else "FAILED")
