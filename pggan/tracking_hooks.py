"""MLflow behind the pipeline's RunHooks: parent run per run id, child run per stage, rank-0 logger, final model.

Only `check` may fail the run (before training). Every later call is retried and, if MLflow stays down, warned
about and skipped: tracking never stops training. A skipped step is redone when the run is resumed (every hook
is idempotent), e.g. rerunning a finished run id registers its model if registering had failed.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, TypeVar

import numpy as np

from pggan import tracking as tr
from pggan.mlflow_logger import MlflowStageLogger
from pggan.config import PipelineConfig
from pggan.runlog import RunHooks, StageLogger

log = logging.getLogger(__name__)
T = TypeVar("T")

KEY_PARENT = "mlflow_parent_run_id"     # run.json["tracking"] keys written by these hooks.
KEY_URI = "mlflow_tracking_uri"
KEY_VERSION = "model_version"


class MlflowRunHooks(RunHooks):
    """Picklable (config + absolute tracking URI): stage_logger runs inside the rank-0 Ray worker."""

    def __init__(self, cfg: PipelineConfig, attempts: int = 3, backoff_s: float = 2.0):
        self.cfg = cfg
        self.uri = tr.resolve_tracking_uri(cfg)                 # absolute: workers log to the same place
        self.attempts, self.backoff_s = attempts, backoff_s

    def _retry(self, what: str, fn: Callable[[], T]) -> T | None:
        for attempt in range(self.attempts):
            try:
                return fn()
            except Exception as e:  # tracking must not end a run that is training
                error = e
                if attempt + 1 < self.attempts:
                    time.sleep(self.backoff_s * 2 ** attempt)
        print(f"[pggan] warning: MLflow {what} failed {self.attempts} times at {tr.redact(self.uri)} "
              f"({type(error).__name__}: {tr.redact(str(error))[:300]}); training goes on. Resume the run id "
              "later to retry.", flush=True)
        return None

    @staticmethod
    def _parent(run: Mapping[str, Any]) -> str | None:
        return run.get("tracking", {}).get(KEY_PARENT)

    # -- RunHooks -------------------------------------------------------------------------------------------------

    def check(self) -> None:
        tr.check_tracking_reachable(self.uri)

    def start_run(self, run: Mapping[str, Any]) -> dict[str, Any]:
        parent = tr.start_parent_run(self.cfg, run["run_id"])   # before training: a failure here fails the run
        tr.log_run_artifacts(self.cfg, parent, run)
        return {KEY_PARENT: parent, KEY_URI: tr.redact(self.uri)}

    def start_stage(self, run: Mapping[str, Any], res: int) -> str | None:
        parent = self._parent(run)
        if parent is None:
            return None
        return self._retry(f"start of stage {res}", lambda: tr.start_stage_run(self.cfg, parent, res))

    def stage_logger(self, res: int, stage_id: str | None) -> StageLogger | None:
        return MlflowStageLogger(self.uri, stage_id) if stage_id else None

    def end_stage(self, run: Mapping[str, Any], res: int, stage_id: str | None, result: Mapping[str, Any],
                  grid: np.ndarray) -> None:
        parent = self._parent(run)
        if parent is None or stage_id is None:
            return

        def log_result() -> None:
            tr.log_stage_result(self.cfg, parent, stage_id, res, result.get("metrics", {}),
                                stage_kimg=result.get("nimg", 0) / 1000, grid=grid)
            tr.log_run_artifacts(self.cfg, parent, run)

        self._retry(f"stage {res} results", log_result)

    def end_run(self, run: Mapping[str, Any], final_checkpoint: str) -> dict[str, Any]:
        parent = self._parent(run)
        if parent is None:
            return {}
        out = self._retry("model logging and registration", lambda: self._register_once(run, parent,
                                                                                        final_checkpoint))
        self._retry("end of run", lambda: self._finish(run, parent, out or {}))
        return out or {}

    # -- helpers --------------------------------------------------------------------------------------------------

    def _register_once(self, run: Mapping[str, Any], parent: str, final_checkpoint: str) -> dict[str, Any]:
        """Log and register the final EMA generator unless this run already did (a rerun of a finished run)."""
        from pggan.checkpoint import build_generator, load_checkpoint
        from pggan.registry import log_and_register_generator

        tags = tr.client_for(self.uri).get_run(parent).data.tags
        if tags.get("pggan.model_version"):
            return {KEY_VERSION: tags["pggan.model_version"]}
        if tags.get("pggan.model_uri") and not self.cfg.tracking.register:
            return {"model_uri": tags["pggan.model_uri"]}
        G_ema = build_generator(load_checkpoint(final_checkpoint, self.cfg.storage))
        last = max(int(k) for k in run["stages"])
        swd_avg = run["stages"][str(last)].get("metrics", {}).get("swd_avg")
        version = log_and_register_generator(G_ema, self.cfg, parent, swd_avg)
        if version is None:
            return {"model_uri": tr.client_for(self.uri).get_run(parent).data.tags.get("pggan.model_uri")}
        return {KEY_VERSION: f"{self.cfg.tracking.model_name}/{version}"}

    def _finish(self, run: Mapping[str, Any], parent: str, out: Mapping[str, Any]) -> None:
        final = {**run, "status": "done", "tracking": {**run.get("tracking", {}), **out}}
        tr.log_run_artifacts(self.cfg, parent, final)
        tr.finish_run(self.cfg, parent, "FINISHED")
