"""Where a run reports: the StageLogger interface (rank 0's per-tick metrics and grids), its JSONL + PNG
implementation under the run folder, and the RunHooks interface to experiment tracking and the model registry
(MLflow behind it: pggan.tracking.hooks; this module knows nothing of MLflow).

Run folder layout written here: {root}/runs/{run_id}/logs/r{res:04d}/metrics.jsonl (one JSON object per tick),
.../r{res:04d}/grids/kimg{kimg:08.2f}.png, and .../r{res:04d}/resume.jsonl (one line per (re)start of the stage:
the images seen it started from, where from, the worker pids).
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

from pggan import imaging
from pggan import storage as st
from pggan.config import StorageConfig


@runtime_checkable
class StageLogger(Protocol):
    """What rank 0 reports during a stage; implementations must never raise into training."""

    def log_metrics(self, metrics: Mapping[str, float], step_kimg: float) -> None: ...

    def log_image(self, image: np.ndarray, key: str, step_kimg: float) -> None: ...

    def close(self) -> None: ...


def stage_log_url(root: str, run_id: str, res: int) -> str:
    return st.join(root, "runs", run_id, "logs", f"r{res:04d}")


def append_jsonl(url: str, record: Mapping[str, Any], storage: StorageConfig | None = None) -> None:
    """Append one JSON line: a real append on local disk, read-and-rewrite (atomic) on object stores."""
    line = json.dumps(record, sort_keys=True) + "\n"
    protocol, path = st.split_url(url)
    if protocol == "file":
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as f:
            f.write(line)
        return
    try:
        old = st.read_bytes(url, storage)
    except FileNotFoundError:
        old = b""
    st.write_bytes_atomic(url, old + line.encode(), storage)


def read_jsonl(url: str, storage: StorageConfig | None = None) -> list[dict[str, Any]]:
    """The records of a JSONL file ([] when it does not exist)."""
    try:
        text = st.read_bytes(url, storage).decode()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class JsonlStageLogger:
    """Per-tick metrics as JSON lines and sample grids as PNGs in the stage's log folder."""

    def __init__(self, log_url: str, storage: StorageConfig | None = None):
        self.log_url = log_url
        self.storage = storage

    def log_metrics(self, metrics: Mapping[str, float], step_kimg: float) -> None:
        append_jsonl(st.join(self.log_url, "metrics.jsonl"), {"kimg": round(step_kimg, 4), **metrics}, self.storage)

    def log_image(self, image: np.ndarray, key: str, step_kimg: float) -> None:
        imaging.save_png(st.join(self.log_url, key, f"kimg{step_kimg:08.2f}.png"), image, self.storage)

    def close(self) -> None:
        pass


class FanoutLogger:
    """Sends everything to several loggers; a failing logger is reported once and then skipped."""

    def __init__(self, *loggers: StageLogger):
        self.loggers = [lg for lg in loggers if lg is not None]

    def _each(self, method: str, *args: Any) -> None:
        for lg in list(self.loggers):
            try:
                getattr(lg, method)(*args)
            except Exception as e:  # a logger must never stop training
                print(f"[pggan] {type(lg).__name__}.{method} failed ({type(e).__name__}: {e}); logger disabled")
                self.loggers.remove(lg)

    def log_metrics(self, metrics: Mapping[str, float], step_kimg: float) -> None:
        self._each("log_metrics", metrics, step_kimg)

    def log_image(self, image: np.ndarray, key: str, step_kimg: float) -> None:
        self._each("log_image", image, key, step_kimg)

    def close(self) -> None:
        self._each("close")


# ----------------------------------------------------------------------------------------------------------------
# The hand-off to tracking.

class RunHooks:
    """What full_run tells experiment tracking, at fixed points of a run; this base class does nothing.

    pggan.tracking.hooks.make_run_hooks(cfg) returns the MLflow implementation. Every method must be idempotent
    (a resumed run calls them again) and must be picklable (stage_logger runs in the rank-0 Ray worker).
    """

    def check(self) -> None:
        """Before anything runs: raise with a one-line message if tracking cannot work (e.g. unreachable)."""

    def start_run(self, run: Mapping[str, Any]) -> dict[str, Any]:
        """At run (re)start; returns what to keep in run.json["tracking"] (e.g. the parent run id)."""
        return {}

    def start_stage(self, run: Mapping[str, Any], res: int) -> str | None:
        """Before a stage trains; returns an id (e.g. a child run id) that stage_logger receives, or None."""
        return None

    def stage_logger(self, res: int, stage_id: str | None) -> StageLogger | None:
        """Called on rank 0 inside the Ray worker: an extra logger for per-tick metrics and grids, or None."""
        return None

    def end_stage(self, run: Mapping[str, Any], res: int, stage_id: str | None, result: Mapping[str, Any],
                  grid: np.ndarray) -> None:
        """After a stage is evaluated: result = {checkpoint, nimg, metrics, samples}; grid = uint8 HWC."""

    def end_run(self, run: Mapping[str, Any], final_checkpoint: str) -> dict[str, Any]:
        """After the last stage: log/register the final EMA generator; returns what to keep in run.json.
        Raises when that fails: full_run records it in run.json and a rerun of the run id does only this step."""
        return {}

    def abort_run(self, run: Mapping[str, Any], status: str, reason: str) -> None:
        """The run stopped early: status "FAILED" (an error) or "KILLED" (interrupted); close what start_run and
        start_stage opened. Must not raise; a rerun of the run id reopens what it continues."""
