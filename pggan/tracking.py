"""MLflow tracking for a pipeline run: tracking URI, reachability, parent/stage runs, stage results and artifacts.

The rank-0 per-tick logger is pggan.mlflow_logger.MlflowStageLogger; the model registry is pggan.registry.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import Any, Mapping

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException

from pggan import storage as st
from pggan.config import PipelineConfig, config_to_dict, flat_params
from pggan.schedule import stage_plan
from pggan.secret_keys import redact_secrets

log = logging.getLogger(__name__)

TAG_RUN_ID = "pggan.run_id"             # The pipeline run id (the run manifest's), on parent and stage runs.
TAG_KIND = "pggan.kind"                 # "pipeline" (parent) or "stage" (child).
TAG_STAGE = "pggan.stage"               # The stage's resolution, on child runs.
TAG_PARENT = "mlflow.parentRunId"       # MLflow's own nesting tag.
TAG_ERROR = "pggan.error"               # Why a run ended FAILED / KILLED; removed when the run is resumed.
DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
# The "user:pass@" of "scheme://user:pass@host"; a password may hold unescaped "/" (AWS secret keys often do).
_CREDENTIALS_RE = re.compile(r"(?<=://)(?:[^\s/@:]+:[^\s@]*|[^\s/@]+)@")
_SAFE_ID_RE = re.compile(r"^[A-Za-z0-9._:-]+$")


class TrackingError(RuntimeError):
    """The tracking setup cannot work (bad URI, unreachable server); raised before training starts."""


def redact(text: str) -> str:
    """Drop `user:password@` from any URL inside `text` and blank secret settings (secret_keys.redact_secrets), for
    messages, params and tags."""
    return _CREDENTIALS_RE.sub("***@", redact_secrets(str(text)))


def client_for(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


# ----------------------------------------------------------------------------------------------------------------
# Where runs go.

def resolve_tracking_uri(cfg: PipelineConfig) -> str:
    """tracking.uri, else MLFLOW_TRACKING_URI, else sqlite:////ABS/{storage.root}/mlflow.db (local roots only).

    The result is absolute (a server URL or an absolute sqlite path) so Ray workers, whose working directory
    differs from the driver's, log to the same place.
    """
    uri = cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri:
        return absolute_tracking_uri(uri)
    protocol, path = st.split_url(cfg.storage.root)
    if protocol != "file":
        raise TrackingError(f"tracking.uri is empty and storage.root is {cfg.storage.root!r} (not a local path): "
                            "an embedded SQLite database cannot live in object storage. Start an MLflow server "
                            "and set tracking.uri (e.g. --set tracking.uri=http://mlflow-host:5000) or "
                            "MLFLOW_TRACKING_URI.")
    return f"sqlite:///{path.rstrip('/')}/{DB_NAME}"


def absolute_tracking_uri(uri: str) -> str:
    """A relative sqlite path becomes absolute; a bare path or file:// store (unsupported by MLflow 3) is an error."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        return uri if path.startswith("/") else "sqlite:///" + os.path.abspath(path)
    if "://" not in uri and uri != "databricks" and not uri.startswith("databricks"):
        raise TrackingError(f"tracking uri {redact(uri)!r} is a path, not a tracking URI: use "
                            f"sqlite:///{os.path.abspath(uri)}/{DB_NAME} or an MLflow server URL http://host:5000")
    if uri.startswith("file:"):
        raise TrackingError(f"tracking uri {redact(uri)!r}: MLflow 3 no longer supports the file store as a "
                            "tracking backend; use sqlite:////abs/path/mlflow.db or an MLflow server URL")
    return uri


def sqlite_path(uri: str) -> str | None:
    """The database file of a sqlite:/// URI, else None."""
    return uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None


def check_tracking_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Raise TrackingError (saying what to do) unless the tracking backend answers within `timeout_s`."""
    db = sqlite_path(uri)
    if db is not None:
        folder = os.path.dirname(db) or "."
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise TrackingError(f"tracking database {db}: cannot create its folder ({e.strerror})") from None
        if not os.access(folder, os.W_OK):
            raise TrackingError(f"tracking database {db}: folder {folder} is not writable; fix its permissions "
                                "or set tracking.uri elsewhere")
        return
    if uri.startswith(("http://", "https://")):
        _check_http(uri, timeout_s)
        return
    _check_with_client(uri, timeout_s)


def _check_http(uri: str, timeout_s: float) -> None:
    import requests

    url = uri.rstrip("/") + "/health"
    try:
        response = requests.get(url, timeout=timeout_s)
    except requests.RequestException as e:
        raise TrackingError(f"MLflow tracking server {redact(uri)} is not reachable within {timeout_s:g} s "
                            f"({type(e).__name__}): start it (mlflow server --host HOST --port PORT) or fix "
                            "tracking.uri / MLFLOW_TRACKING_URI") from None
    if response.status_code != 200:
        raise TrackingError(f"{redact(url)} answered HTTP {response.status_code}, not 200: is {redact(uri)} an "
                            "MLflow tracking server? Fix tracking.uri / MLFLOW_TRACKING_URI")


def _check_with_client(uri: str, timeout_s: float) -> None:
    outcome: dict[str, Any] = {}

    def probe() -> None:
        try:
            client_for(uri).search_experiments(max_results=1)
            outcome["ok"] = True
        except Exception as e:  # any failure is reported below with its type
            outcome["error"] = e

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if "ok" in outcome:
        return
    why = f"{type(outcome['error']).__name__}: {redact(outcome['error'])}" if "error" in outcome else "no answer"
    raise TrackingError(f"tracking backend {redact(uri)} did not answer within {timeout_s:g} s ({why}); "
                        "fix tracking.uri / MLFLOW_TRACKING_URI")


def run_hooks(cfg: PipelineConfig):
    """The pipeline's RunHooks with MLflow behind them (found by pggan.runlog.make_run_hooks)."""
    from pggan.tracking_hooks import MlflowRunHooks

    return MlflowRunHooks(cfg)


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


def _find_run(client: MlflowClient, experiment_id: str, tags: Mapping[str, str]) -> str | None:
    for value in tags.values():
        if not _SAFE_ID_RE.match(value):
            raise TrackingError(f"run id {value!r}: use letters, digits, '.', '_', ':' or '-' only")
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = client.search_runs([experiment_id], filter_string=query, max_results=2, order_by=["start_time ASC"])
    return runs[0].info.run_id if runs else None


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
    mlflow_id = _find_run(client, experiment_id, tags)
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
    mlflow_id = _find_run(client, parent.info.experiment_id, tags)
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


def scrub(obj: Any) -> Any:
    """A copy of a JSON-like value (a config dict, a manifest) with secrets blanked and credentials removed from
    URLs: what may be logged to MLflow."""
    def urls(o: Any) -> Any:
        if isinstance(o, Mapping):
            return {k: urls(v) for k, v in o.items()}
        if isinstance(o, list):
            return [urls(v) for v in o]
        return redact(o) if isinstance(o, str) else o

    return urls(redact_secrets(obj))


def log_run_artifacts(cfg: PipelineConfig, parent_id: str, manifest: Mapping[str, Any]) -> None:
    """The run manifest (run.json) and resolved config (config.yaml) as parent-run artifacts, secrets removed."""
    client = client_for(resolve_tracking_uri(cfg))
    client.log_dict(parent_id, scrub(dict(manifest)), "run.json")
    client.log_dict(parent_id, scrub(config_to_dict(cfg)), "config.yaml")
