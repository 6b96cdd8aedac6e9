"""A real `mlflow server` (SQLite backend, local artifacts) on a loopback port, and stopping what we started."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

from s3server import free_port


@dataclass
class MlflowServer:
    """An `mlflow server` process; `url` is its tracking URI, `root` holds its database, artifacts and log."""

    url: str
    root: str
    process: subprocess.Popen


def start_mlflow_server(root: str, timeout_s: float = 240.0) -> MlflowServer:
    """`mlflow server` on a free loopback port (own process group), polled on /health until it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    cmd = [mlflow_cli, "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
           "--artifacts-destination", f"{root}/artifacts", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    # MLflow's job runner (a supervisor and 7 huey queue consumers, for GenAI jobs) is not used by any test and
    # costs ~15 s of CPU to start and a steady share of 2 cores while it polls; LocalCluster turns it off too.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(os.path.join(root, "server.log"), "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with code {proc.returncode}; see {root}/server.log")
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1).close()
            return MlflowServer(url, root, proc)
        except OSError:
            time.sleep(0.5)
    stop_process_group(proc)
    raise RuntimeError(f"mlflow server did not answer on {url}/health within {timeout_s:g} s; see {root}/server.log")


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group this fixture started (the server and its workers), SIGKILL if it lingers."""
    import signal

    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
