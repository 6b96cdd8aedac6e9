"""The rank-0 stage logger over MLflow: training hands records to a background thread and never waits on, or
fails by, the tracking server (records are retried, then dropped with a warning)."""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Mapping

import numpy as np
from mlflow.entities import Metric

from pggan.tracking.client import TrackingError, client_for, redact, retry
from pggan.tracking.runs import kimg_step

log = logging.getLogger(__name__)

_CLOSE = object()


class MlflowStageLogger:
    """StageLogger over MLflow: log_metrics / log_image / close. Each record is retried `attempts` times (on top
    of MLflow's own HTTP retries); a record that still fails is dropped with a warning and training goes on."""

    def __init__(self,
        tracking_uri:    str,               # Absolute tracking URI or server URL.
        mlflow_run_id:   str,               # The stage's (child) run.
        attempts:        int = 3,           # Tries per record before it is dropped.
        backoff_s:       float = 2.0,       # Sleep before try k+1: backoff_s * 2**k.
        flush_timeout_s: float = 120.0,     # close() waits this long for pending records, then gives up.
        max_pending:     int = 10_000,      # Records queued beyond this are dropped (a long outage) ...
        max_image_bytes: int = 256 << 20,   # ... and images beyond this many queued bytes.
    ):
        self.run_id = mlflow_run_id
        self.uri = tracking_uri
        self.attempts, self.backoff_s, self.flush_timeout_s = attempts, backoff_s, flush_timeout_s
        self.dropped = 0
        self._client = client_for(tracking_uri)
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._image_bytes, self._max_image_bytes = 0, max_image_bytes
        self._lock = threading.Lock()                           # guards _image_bytes (two threads update it)
        self._closed = False
        self._thread = threading.Thread(target=self._drain, name=f"mlflow-logger-{mlflow_run_id[:8]}", daemon=True)
        self._thread.start()

    def log_metrics(self, metrics: Mapping[str, Any], step_kimg: float) -> None:
        now, step = int(time.time() * 1000), kimg_step(step_kimg)
        batch = [Metric(k, _as_float(v), now, step) for k, v in metrics.items()]
        self._put(("metrics", batch, step))

    def log_image(self, image: np.ndarray, key: str, step_kimg: float) -> None:
        """uint8 [H, W, 3] image, shown by the MLflow UI as a step-indexed series under `key`."""
        self._put(("image", np.array(image, dtype=np.uint8, copy=True), key, kimg_step(step_kimg)))

    def close(self) -> None:
        """Send what is pending (up to flush_timeout_s), then stop the sender thread. Never raises."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + self.flush_timeout_s
        try:
            self._queue.put(_CLOSE, timeout=self.flush_timeout_s)
        except queue.Full:
            pass
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        if self._thread.is_alive():
            pending = self._queue.qsize()
            self.dropped += pending
            log.warning("MLflow logging to run %s at %s: gave up on %d pending records after %g s; training "
                        "results are unaffected", self.run_id, redact(self.uri), pending, self.flush_timeout_s)

    def __enter__(self) -> "MlflowStageLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- sender thread --------------------------------------------------------------------------------------------

    def _put(self, record: tuple) -> None:
        if self._closed:
            log.warning("MlflowStageLogger for run %s is closed; a %s record was dropped", self.run_id, record[0])
            return
        size = record[1].nbytes if record[0] == "image" else 0
        try:
            with self._lock:
                if self._image_bytes + size > self._max_image_bytes:
                    raise queue.Full
                self._queue.put_nowait(record)
                self._image_bytes += size
        except queue.Full:
            self.dropped += 1
            if self.dropped % 100 == 1:
                log.warning("MLflow logging to run %s is falling behind: %d records dropped so far", self.run_id,
                            self.dropped)

    def _drain(self) -> None:
        while True:
            record = self._queue.get()
            if record is _CLOSE:
                return
            self._send_with_retries(record)
            if record[0] == "image":
                with self._lock:
                    self._image_bytes -= record[1].nbytes

    def _send_with_retries(self, record: tuple) -> None:
        try:
            retry(f"logging to run {self.run_id}", lambda: self._send(record), self.uri, self.attempts, self.backoff_s)
        except TrackingError as e:  # dropped: a tracking failure never reaches training
            self.dropped += 1
            log.warning("%s; dropped a %s record at step %s. Training continues.", e, record[0], record[-1])

    def _send(self, record: tuple) -> None:
        if record[0] == "metrics":
            self._client.log_batch(self.run_id, metrics=record[1])
        else:
            _, image, key, step = record
            self._client.log_image(self.run_id, image, key=key, step=step)


def _as_float(value: Any) -> float:
    return float(value.item() if hasattr(value, "item") else value)   # python, numpy or 0-d torch values
