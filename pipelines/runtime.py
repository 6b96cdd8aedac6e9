"""Ray runtime for the pipeline scripts: join or start Ray, make the package importable, absolute settings.

Ray workers run in their own working directory, and on a real cluster on other machines: everything they get
must be absolute (storage URLs, tracking URIs) and credentials must reach them without being logged.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import sys
from pathlib import Path

from pggan import storage as st
from pggan.config import ConfigError, PipelineConfig

REPO_ROOT = str(Path(__file__).resolve().parent.parent)


def make_importable() -> None:
    """Put the repo root on sys.path and PYTHONPATH, so `python pipelines/x.py` and local Ray workers import pggan."""
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if REPO_ROOT not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([REPO_ROOT, *paths])


JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"     # set by Ray's job supervisor in a submitted job's driver


def absolute_config(cfg: PipelineConfig) -> PipelineConfig:
    """storage.root as an absolute URL (a relative path means relative to the driver's working directory).

    In a submitted Ray job the working directory is a temporary copy of the uploaded one, so a relative root
    would put datasets and checkpoints where nobody finds them again: that is a ConfigError.
    """
    root = cfg.storage.root
    if JOB_ENV in os.environ and "://" not in root and not os.path.isabs(os.path.expanduser(root)):
        raise ConfigError(f"storage.root: {root!r} is relative, and this is a submitted Ray job whose working "
                          "directory is a temporary copy: give an absolute path or URL, e.g. "
                          "--set storage.root=/data/pggan or --set storage.root=s3://bucket/pggan")
    return cfg.replace(storage=dataclasses.replace(cfg.storage, root=st.to_url(root)))


def worker_config(cfg: PipelineConfig) -> PipelineConfig:
    """The config Ray workers get: absolute root, and S3 endpoint/keys/region resolved from config or AWS_* env.

    Workers on other machines do not see the driver's environment; the keys travel inside the config object,
    whose repr (all Ray prints or records of it) hides them (StorageConfig fields with repr=False).
    """
    cfg = absolute_config(cfg)
    opts = st.s3_options(cfg.storage)
    return cfg.replace(storage=dataclasses.replace(
        cfg.storage, endpoint_url=opts["endpoint_url"] or "", region=opts["region"] or "",
        access_key_id=opts["access_key_id"] or "", secret_access_key=opts["secret_access_key"] or ""))


def local_num_cpus(cfg: PipelineConfig) -> int:
    """Logical CPUs of a private local Ray: oversubscribed (>= 4) so Ray Data tasks run beside the train workers."""
    return cfg.scaling.num_cpus or max(4, os.cpu_count() or 1)


# Settings for a private local Ray, where each stage's fixed cost matters more than on a cluster (values already in
# the environment win). Ray Train's controller polls its workers every 2 s by default and a Train job spends
# whole polls starting, registering checkpoints and stopping; Ray Data's read_parquet starts 32 footer-reader
# processes per read, which on a laptop take 5-15 s to start while the dataset has a file or two per level.
LOCAL_RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5", "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "2"}


def local_ray_env(environ: dict[str, str] | os._Environ) -> dict[str, str]:
    """The LOCAL_RAY_ENV entries the environment does not set itself."""
    return {k: v for k, v in LOCAL_RAY_ENV.items() if k not in environ}


DASHBOARD_PORT = 8265     # Ray's usual dashboard port; a private Ray takes a free one when another Ray holds it
DASHBOARD_ATTEMPTS = 3    # another Ray starting at the same moment can win the port: start again on another
PORT_TAKEN = ("already occupied", "address already in use")


def _free_port(preferred: int) -> int:
    """`preferred` if nothing listens on it on loopback, else a port the kernel hands out."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise OSError("no free port on 127.0.0.1 for the Ray dashboard")


def start_private_ray(num_cpus: int, **init_kwargs) -> str:
    """ray.init(address="local") with the dashboard on loopback, and every process of this Ray told where it is.

    Ray Train's placement-group cleaner asks the dashboard's state API whether the Train controller is still alive.
    Left to itself, a worker finds "the" cluster by scanning the machine: with no dashboard every check fails (and
    logs a warning a second), and beside a `ray start` cluster it would ask that cluster, not find the controller
    there, and remove the stage's placement group. RAY_API_SERVER_ADDRESS, set while ray.init starts the raylet
    (whose environment every worker inherits) and restored afterwards, points them at this Ray's own dashboard.
    Returns the dashboard URL.
    """
    import ray

    preferred = DASHBOARD_PORT
    for attempt in range(DASHBOARD_ATTEMPTS):
        port = _free_port(preferred)
        try:
            _init_with_dashboard(port, num_cpus, init_kwargs)
            return f"http://127.0.0.1:{port}"
        except Exception as e:  # noqa: BLE001 - Ray reports the dashboard's bind error as a bare Exception
            # Another Ray starting at the same moment can take the port between our check and Ray's own check
            # (ValueError "already occupied") or the dashboard's bind (Exception "address already in use").
            if not any(m in str(e) for m in PORT_TAKEN) or attempt == DASHBOARD_ATTEMPTS - 1:
                raise
            ray.shutdown()
            preferred = 0                                       # next time: any port the kernel hands out
    raise AssertionError("unreachable")


def _init_with_dashboard(port: int, num_cpus: int, init_kwargs: dict) -> None:
    import ray

    url = f"http://127.0.0.1:{port}"
    saved = os.environ.get("RAY_API_SERVER_ADDRESS")
    os.environ["RAY_API_SERVER_ADDRESS"] = url
    try:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                 dashboard_port=port, **init_kwargs)
    finally:
        if saved is None:
            os.environ.pop("RAY_API_SERVER_ADDRESS", None)
        else:
            os.environ["RAY_API_SERVER_ADDRESS"] = saved


def init_ray(cfg: PipelineConfig) -> str:
    """Use the running Ray; else join scaling.ray_address / RAY_ADDRESS (a job's driver has it); else start a
    private local Ray. Returns a short description of which."""
    import ray

    if ray.is_initialized():
        return "the running Ray"
    ray.data.DataContext.get_current().enable_progress_bars = False
    address = cfg.scaling.ray_address or os.environ.get("RAY_ADDRESS", "")
    if address:
        ray.init(address=address, log_to_driver=True)
        return f"the Ray cluster at {address}"
    make_importable()                                           # before ray.init: workers inherit PYTHONPATH
    os.environ.update(local_ray_env(os.environ))                # and these
    # With the dashboard (~3 s once per run): where Ray users watch a run, and what Ray Train's placement-group
    # cleaner needs (start_private_ray).
    dashboard = start_private_ray(local_num_cpus(cfg), log_to_driver=True)
    return f"a private local Ray ({local_num_cpus(cfg)} logical CPUs, dashboard {dashboard})"
