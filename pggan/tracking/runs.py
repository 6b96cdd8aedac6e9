"""MLflow runs of a pipeline run: the experiment, the parent run per run id, one nested run per stage, stage-end
metrics and artifacts (the run manifest and config). Idempotent: a resumed pipeline run finds its runs by tag.

The rank-0 per-tick logger is pggan.tracking.stage_logger; the model registry is pggan.tracking.registry.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Mapping

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException

from pggan import storage as st
from pggan.config import PipelineConfig, config_to_dict, flat_params
from pggan.schedule import stage_plan
from pggan.tracking.client import (ARTIFACTS_DIR, TrackingError, client_for, find_run, redact, resolve_tracking_uri,
                                   scrub, sqlite_path)

log = logging.getLogger(__name__)

TAG_RUN_ID = "pggan.run_id"             # The pipeline run id (the run manifest's), on parent and stage runs.
TAG_KIND = "pggan.kind"                 # "pipeline" (parent) or "stage" (child).
TAG_STAGE = "pggan.stage"               # The stage's resolution, on child runs.
TAG_PARENT = "mlflow.parentRunId"       # MLflow's own nesting tag.
TAG_ERROR = "pggan.error"               # Why a run ended FAILED / KILLED; removed when the run is resumed.


# ----------------------------------------------------------------------------------------------------------------
# Experiment, parent run, stage runs (idempotent: a resumed pipeline run finds its runs by tag).

def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment `name`, created if missing (artifacts next to a sqlite database, else the server's)."""
    client = client_for(uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    db = sqlite_path(uri)
    location = st.to_url(os.path.join(os.path.dirname(db), ARTIFACTS_DIR)) if db else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as e:  # another driver created it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise TrackingError(f"cannot create MLflow experiment {name!r} at {redact(uri)}: {redact(e)}") from None
        return found.experiment_id


def _resume(client: MlflowClient, run_id: str) -> None:
    """Reopen a run that ended (FAILED, KILLED, or FINISHED before a rerun); the old failure reason goes."""
    run = client.get_run(run_id)
    if TAG_ERROR in run.data.tags:
        client.delete_tag(run_id, TAG_ERROR)
    if run.info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")


def log_params_once(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    """Log params not yet on the run; a changed value (a resumed run with another config) is warned about, kept."""
    existing = client.get_run(run_id).data.params
    changed = sorted(k for k, v in params.items() if k in existing and existing[k] != v)
    if changed:
        log.warning("MLflow run %s keeps its first values of %s (params cannot change); the run manifest holds "
                    "the config actually used", run_id, ", ".join(changed))
    new = [Param(k, redact(v)) for k, v in params.items() if k not in existing]
    for i in range(0, len(new), 100):
        client.log_batch(run_id, params=new[i:i + 100])


def start_parent_run(cfg: PipelineConfig, run_id: str) -> str:
    """The MLflow parent run of pipeline run `run_id` (created once; a resumed run continues it). Returns its id."""
    uri = resolve_tracking_uri(cfg)
    client = client_for(uri)
    experiment_id = ensure_experiment(uri, cfg.tracking.experiment)
    tags = {TAG_RUN_ID: run_id, TAG_KIND: "pipeline"}
    mlflow_id = find_run(client, experiment_id, tags)
    if mlflow_id is None:
        mlflow_id = client.create_run(experiment_id, run_name=run_id, tags=tags).info.run_id
    else:
        _resume(client, mlflow_id)
    log_params_once(client, mlflow_id, flat_params(cfg))
    client.log_dict(mlflow_id, scrub(config_to_dict(cfg)), "config.yaml")
    return mlflow_id


def start_stage_run(cfg: PipelineConfig, parent_id: str, res: int) -> str:
    """The nested MLflow run of stage `res` under `parent_id` (created once per stage). Returns its id."""
    client = client_for(resolve_tracking_uri(cfg))
    parent = client.get_run(parent_id)
    run_id = parent.data.tags[TAG_RUN_ID]
    tags = {TAG_PARENT: parent_id, TAG_RUN_ID: run_id, TAG_KIND: "stage", TAG_STAGE: str(res)}
    mlflow_id = find_run(client, parent.info.experiment_id, tags)
    if mlflow_id is None:
        mlflow_id = client.create_run(parent.info.experiment_id, run_name=f"{run_id}-r{res}", tags=tags).info.run_id
    else:
        _resume(client, mlflow_id)
    plan = stage_plan(cfg, res)
    log_params_once(client, mlflow_id, {
        "stage.resolution": str(res), "stage.fade_kimg": str(plan.fade_nimg / 1000),
        "stage.stabilize_kimg": str(plan.stabilize_nimg / 1000), "stage.batch_size": str(plan.batch_size),
        "stage.lr": str(plan.lr), "stage.num_workers": str(cfg.scaling.num_workers)})
    return mlflow_id


def finish_run(cfg: PipelineConfig, mlflow_run_id: str, status: str = "FINISHED") -> None:
    """Mark a parent or stage run FINISHED / FAILED / KILLED."""
    RunStatus.from_string(status)  # raises on a typo
    client_for(resolve_tracking_uri(cfg)).set_terminated(mlflow_run_id, status=status)


def end_open_runs(cfg: PipelineConfig, mlflow_run_ids: list[str], status: str, reason: str) -> None:
    """End those of the runs still RUNNING as `status` (FAILED / KILLED), with `reason` in their pggan.error tag;
    runs that ended already keep their status."""
    RunStatus.from_string(status)
    client = client_for(resolve_tracking_uri(cfg))
    for run_id in mlflow_run_ids:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_tag(run_id, TAG_ERROR, redact(reason)[:5000])
            client.set_terminated(run_id, status=status)


# ----------------------------------------------------------------------------------------------------------------
# Results and artifacts logged by the driver.

def kimg_step(kimg: float) -> int:
    """MLflow steps are integers: curves are stepped in images seen (kimg * 1000)."""
    return int(round(float(kimg) * 1000))


# Per-resolution results ({"32": .., "16": ..}) and the metric name prefix of their levels.
LEVEL_METRICS = {"swd": "swd", "real_swd": "real_swd", "swd_ratio_levels": "swd_ratio"}


def stage_metrics(res: int, result: Mapping[str, Any]) -> dict[str, float]:
    """Flatten stage-end results: swd {"32": x, "16": y} -> swd_32, swd_16 (likewise real_swd_{side} and
    swd_ratio_{side}; an older result's swd_levels [finest, ...] -> swd_{side}); scalars kept as they are."""
    out: dict[str, float] = {}
    for key, value in result.items():
        if key in LEVEL_METRICS and isinstance(value, Mapping):
            out.update({f"{LEVEL_METRICS[key]}_{int(side)}": float(v) for side, v in value.items()})
        elif key == "swd_levels":
            out.update({f"swd_{res >> i}": float(v) for i, v in enumerate(value)})
        elif isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def log_stage_result(cfg: PipelineConfig, parent_id: str, stage_id: str, res: int, result: Mapping[str, Any],
                     stage_kimg: float, grid: np.ndarray | None = None) -> dict[str, float]:
    """Stage-end metrics (SWD per level and average, swd_ratio, MS-SSIM, sizes) and sample grid on the stage run
    (at its last step) and on the parent run (stepped by resolution); the stage run is marked FINISHED. Returns
    the flat metrics."""
    client = client_for(resolve_tracking_uri(cfg))
    metrics = stage_metrics(res, result)
    now = int(time.time() * 1000)
    step = kimg_step(stage_kimg)
    client.log_batch(stage_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])
    client.log_batch(parent_id, metrics=[Metric(k, v, now, res) for k, v in metrics.items()])
    if grid is not None:
        client.log_image(stage_id, np.asarray(grid, dtype=np.uint8), key="samples_final", step=step)
        client.log_image(parent_id, np.asarray(grid, dtype=np.uint8), key="samples", step=res)
    client.set_terminated(stage_id, status="FINISHED")
    return metrics


def log_run_artifacts(cfg: PipelineConfig, parent_id: str, manifest: Mapping[str, Any]) -> None:
    """The run manifest (run.json) and resolved config (config.yaml) as parent-run artifacts, secrets removed."""
    client = client_for(resolve_tracking_uri(cfg))
    client.log_dict(parent_id, scrub(dict(manifest)), "run.json")
    client.log_dict(parent_id, scrub(config_to_dict(cfg)), "config.yaml")
