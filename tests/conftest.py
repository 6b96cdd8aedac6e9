"""Shared test services: a real S3 server (moto) and a real MLflow server (subprocesses on loopback), and one
private local Ray per session."""

from __future__ import annotations

import os
from typing import Callable, Iterator

import pytest

from mlflowserver import MlflowServer, start_mlflow_server, stop_process_group  # tests/ is on sys.path
from s3server import S3Server, free_port, start_moto, stop_moto  # tests/ is on sys.path (rootdir conftest)

__all__ = ["S3Server", "free_port", "start_moto", "stop_moto"]

# Two Ray settings for speed on a 2-core machine, set before any Ray starts in this session so that they reach
# every process that matters: this process's Ray (`ray_local`), the pipeline subprocesses and their private Rays,
# and the Ray clusters tests start (their raylets, and so their workers and job drivers, inherit this
# environment). An explicit value in the environment wins. What a test asserts does not depend on either.
# - Ray Train's controller polls its workers every 2 s by default, and a stage's Train job spends whole polls
#   starting, registering checkpoints and shutting down: ~10 s of every job here, and the suite runs ~25 jobs.
#   Ray Train hands the variable on to its controller and workers.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
# - Ray Data's `read_parquet` (each stage's training data) starts a pool of 32 footer-reader actors, one Python
#   process each, for every read; a test level is one Parquet file, so one reader does the same work. 32
#   processes starting at once on 2 cores cost 5-15 s of every Train job here.
os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "1")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server for the whole session; AWS_* variables (endpoint, key 'testing') are set while it runs."""
    server = start_moto()
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    try:
        yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stop_moto(server)


@pytest.fixture
def make_bucket(s3_server: S3Server) -> Callable[[str | None], str]:
    """Factory: make_bucket() -> 's3://b-<unique>' on the session's S3 server."""
    return s3_server.make_bucket


@pytest.fixture(scope="session")
def ray_local(s3_server: S3Server) -> Iterator[None]:
    """One private local Ray (4 logical CPUs) per session. It depends on s3_server so that the AWS_* variables
    are set before ray.init: Ray worker processes only see variables that existed when Ray started."""
    import ray

    from pipelines.runtime import start_private_ray

    start_private_ray(num_cpus=4)                       # as the pipeline starts one (dashboard and all)
    try:
        yield None
    finally:
        ray.shutdown()


# ----------------------------------------------------------------------------------------------------------------
# A real MLflow tracking server (SQLite backend, local artifacts) on loopback, one per session.


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real `mlflow server` for the whole session. Tests pass `mlflow_server.url` explicitly (no global env)."""
    server = start_mlflow_server(str(tmp_path_factory.mktemp("mlflow-server")))
    try:
        yield server
    finally:
        stop_process_group(server.process)
