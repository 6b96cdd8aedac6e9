"""The one way to MLflow: where runs go (tracking URI), whether it answers, the client, the retry and the run lookup.

Everything else in pggan.tracking talks to MLflow through these: `client_for(uri)`, `retry(...)` around calls that
may meet a flaky server, `find_run(...)` to find a run again by its tags (resumes), `redact` / `scrub` on whatever
is logged or printed.
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from typing import Any, Callable, Iterator, Mapping, TypeVar

import mlflow
from mlflow import MlflowClient

from pggan import storage as st
from pggan.config import PipelineConfig
from pggan.secret_keys import redact_secrets

T = TypeVar("T")

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
# The "user:pass@" of "scheme://user:pass@host"; a password may hold unescaped "/" (AWS secret keys often do).
_CREDENTIALS_RE = re.compile(r"(?<=://)(?:[^\s/@:]+:[^\s@]*|[^\s/@]+)@")
_SAFE_ID_RE = re.compile(r"^[A-Za-z0-9._:-]+$")


class TrackingError(RuntimeError):
    """The tracking setup cannot work (bad URI, unreachable server), or a tracking call failed every retry."""


def redact(text: str) -> str:
    """Drop `user:password@` from any URL inside `text` and blank secret settings (secret_keys.redact_secrets), for
    messages, params and tags."""
    return _CREDENTIALS_RE.sub("***@", redact_secrets(str(text)))


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


def client_for(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextlib.contextmanager
def using_tracking_uri(uri: str | None) -> Iterator[None]:
    """Point MLflow's fluent API (and model loading) at `uri` for the block; None leaves it as it is."""
    if uri is None:
        yield
        return
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def retry(what: str, fn: Callable[[], T], uri: str, attempts: int, backoff_s: float) -> T:
    """fn(), tried up to `attempts` times with a sleep of backoff_s * 2**k after failed try k (on top of MLflow's own
    HTTP retries). When every try failed: TrackingError naming `what`, the server and the last error."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as e:  # any tracking failure: retry, then one clear error
            error = e
            if attempt + 1 < attempts:
                time.sleep(backoff_s * 2 ** attempt)
    raise TrackingError(f"MLflow {what} failed {attempts} time(s) at {redact(uri)} "
                        f"({type(error).__name__}: {redact(str(error))[:300]})")


def find_runs(client: MlflowClient, experiment_id: str, tags: Mapping[str, str],
              max_results: int = 1000) -> list[Any]:
    """The experiment's runs carrying every one of `tags` (MLflow Run objects), oldest first."""
    for key, value in tags.items():
        if not _SAFE_ID_RE.match(value):
            raise TrackingError(f"{key} {value!r}: use letters, digits, '.', '_', ':' or '-' only")
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return client.search_runs([experiment_id], filter_string=query, max_results=max_results,
                              order_by=["start_time ASC"])


def find_run(client: MlflowClient, experiment_id: str, tags: Mapping[str, str]) -> str | None:
    """The id of the oldest run carrying `tags` (how a resumed run finds its MLflow runs again), else None."""
    runs = find_runs(client, experiment_id, tags, max_results=1)
    return runs[0].info.run_id if runs else None


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
