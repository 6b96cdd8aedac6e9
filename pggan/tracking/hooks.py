"""MLflow behind the pipeline's RunHooks (`make_run_hooks(cfg)`): parent run per run id, child run per stage,
rank-0 logger, final model.

Only `check` (before training) and `end_run` (the final registration, after training) may fail the run. Every
call in between is retried and, if MLflow stays down, warned about and skipped: tracking never stops training.
Every hook is idempotent, so a resumed run redoes what was skipped; full_run records a failed `end_run` in the
run manifest, and rerunning the run id then does only that step. A run that stops early is closed as FAILED
(an error) or KILLED (interrupted) by `abort_run`; resuming it reopens the same parent and stage runs.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

import numpy as np

from pggan.config import PipelineConfig
from pggan.stage_log import RunHooks, StageLogger
from pggan.tracking import runs
from pggan.tracking.client import (TrackingError, check_tracking_reachable, client_for, redact,
                                   resolve_tracking_uri, retry)
from pggan.tracking.stage_logger import MlflowStageLogger

T = TypeVar("T")

KEY_PARENT = "mlflow_parent_run_id"     # run.json["tracking"] keys written by these hooks.
KEY_URI = "mlflow_tracking_uri"
KEY_VERSION = "model_version"
KEY_CHAMPION = "champion"               # {"moved": bool, "reason": one line}: why the alias moved or not.


class MlflowRunHooks(RunHooks):
    """Picklable (config + absolute tracking URI): stage_logger runs inside the rank-0 Ray worker."""

    def __init__(self, cfg: PipelineConfig, attempts: int = 3, backoff_s: float = 2.0):
        self.cfg = cfg
        self.uri = resolve_tracking_uri(cfg)                    # absolute: workers log to the same place
        self.attempts, self.backoff_s = attempts, backoff_s

    def _attempt(self, what: str, fn: Callable[[], T], attempts: int | None = None) -> T:
        """fn(), retried with backoff; raises TrackingError naming `what` and the server when every try failed."""
        return retry(what, fn, self.uri, attempts or self.attempts, self.backoff_s)

    def _retry(self, what: str, fn: Callable[[], T], attempts: int | None = None,
               then: str = "training goes on. Resume the run id later to retry") -> T | None:
        """_attempt, but a failure is a warning (tracking must not end a run that is training); None then."""
        try:
            return self._attempt(what, fn, attempts)
        except TrackingError as e:
            print(f"[pggan] warning: {e}; {then}.", flush=True)
            return None

    @staticmethod
    def _parent(run: Mapping[str, Any]) -> str | None:
        return run.get("tracking", {}).get(KEY_PARENT)

    # -- RunHooks -------------------------------------------------------------------------------------------------

    def check(self) -> None:
        check_tracking_reachable(self.uri)

    def start_run(self, run: Mapping[str, Any]) -> dict[str, Any]:
        parent = runs.start_parent_run(self.cfg, run["run_id"])  # before training: a failure here fails the run
        runs.log_run_artifacts(self.cfg, parent, run)
        return {KEY_PARENT: parent, KEY_URI: redact(self.uri)}

    def start_stage(self, run: Mapping[str, Any], res: int) -> str | None:
        parent = self._parent(run)
        if parent is None:
            return None
        return self._retry(f"start of stage {res}", lambda: runs.start_stage_run(self.cfg, parent, res))

    def stage_logger(self, res: int, stage_id: str | None) -> StageLogger | None:
        return MlflowStageLogger(self.uri, stage_id) if stage_id else None

    def end_stage(self, run: Mapping[str, Any], res: int, stage_id: str | None, result: Mapping[str, Any],
                  grid: np.ndarray) -> None:
        parent = self._parent(run)
        if parent is None or stage_id is None:
            return

        def log_result() -> None:
            runs.log_stage_result(self.cfg, parent, stage_id, res, result.get("metrics", {}),
                                stage_kimg=result.get("nimg", 0) / 1000, grid=grid)
            runs.log_run_artifacts(self.cfg, parent, run)

        self._retry(f"stage {res} results", log_result)

    def end_run(self, run: Mapping[str, Any], final_checkpoint: str) -> dict[str, Any]:
        """Log and register the final EMA generator, then end the parent run FINISHED. Raises TrackingError
        (after retries) or CheckpointError (the final checkpoint cannot be read): full_run records it."""
        parent = self._parent(run)
        if parent is None:
            return {}
        out = self._attempt("lookup of the logged model", lambda: self._registered_already(parent))
        if out is None:
            from pggan.checkpoint import build_generator, load_checkpoint

            G_ema = build_generator(load_checkpoint(final_checkpoint, self.cfg.storage))   # not a tracking problem
            out = self._attempt("model logging and registration", lambda: self._register(run, parent, G_ema))
        self._attempt("end of run", lambda: self._finish(run, parent, out))
        return out

    def abort_run(self, run: Mapping[str, Any], status: str, reason: str) -> None:
        parent = self._parent(run)
        if parent is None:
            return
        open_stages = [s["tracking_id"] for s in run["stages"].values()
                       if s.get("tracking_id") and s["status"] != "done"]

        def close() -> None:
            runs.log_run_artifacts(self.cfg, parent, run)
            runs.end_open_runs(self.cfg, [*open_stages, parent], status, reason)

        self._retry(f"closing the run as {status}", close, attempts=1,
                    then="its MLflow runs stay RUNNING until the run id is resumed")

    # -- helpers --------------------------------------------------------------------------------------------------

    def _registered_already(self, parent: str) -> dict[str, Any] | None:
        """What run.json keeps when this run logged (and registered) its generator before, else None."""
        tags = client_for(self.uri).get_run(parent).data.tags
        if tags.get("pggan.model_version"):
            return {KEY_VERSION: tags["pggan.model_version"]}
        if tags.get("pggan.model_uri") and not self.cfg.tracking.register:
            return {"model_uri": tags["pggan.model_uri"]}
        return None

    def _register(self, run: Mapping[str, Any], parent: str, G_ema: Any) -> dict[str, Any]:
        """Log the final EMA generator on the parent run and (tracking.register) register it."""
        from pggan.tracking.registry import log_and_register_generator

        last = max(int(k) for k in run["stages"])
        done = log_and_register_generator(G_ema, self.cfg, parent, run["stages"][str(last)].get("metrics", {}))
        if done.version is None:
            return {"model_uri": client_for(self.uri).get_run(parent).data.tags.get("pggan.model_uri")}
        return {KEY_VERSION: f"{self.cfg.tracking.model_name}/{done.version}",
                KEY_CHAMPION: {"moved": done.champion, "reason": done.reason}}

    def _finish(self, run: Mapping[str, Any], parent: str, out: Mapping[str, Any]) -> None:
        final = {**run, "status": "done", "registration": {"status": "done"},
                 "tracking": {**run.get("tracking", {}), **out}}
        runs.log_run_artifacts(self.cfg, parent, final)
        runs.finish_run(self.cfg, parent, "FINISHED")


def make_run_hooks(cfg: PipelineConfig) -> RunHooks:
    """The hooks a pipeline run reports through: MLflow tracking and the model registry. (The do-nothing base,
    pggan.stage_log.RunHooks, is for callers that track nothing, e.g. tests passing hooks= to full_run.)"""
    return MlflowRunHooks(cfg)
