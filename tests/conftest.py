"""Shared test services: a real S3 server (moto) and a real MLflow server (subprocesses on loopback), and one
private local Ray per session."""

from __future__ import annotations

import os
from typing import Callable, Iterator

import pytest

from mlflowserver import MlflowServer, start_mlflow_server, stop_process_group  # tests/ is on sys.path
from s3server import S3Server, free_port, start_moto, stop_moto  # tests/ is on sys.path (rootdir conftest)

from pipelines.runtime import local_ray_env, start_private_ray

__all__ = ["S3Server", "free_port", "start_moto", "stop_moto"]

# The private-local-Ray settings (pipelines.runtime.LOCAL_RAY_ENV: faster Train polling, fewer Parquet footer
# readers), set before any Ray starts in this session so that they reach every process that matters: this
# process's Ray (`ray_local`), the pipeline subprocesses, and the Ray clusters tests start (their raylets, and so
# their workers and job drivers, inherit this environment). A test level is one Parquet file, so one footer reader
# is enough here. An explicit value in the environment wins. What a test asserts does not depend on either.
os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "1")
os.environ.update(local_ray_env(os.environ))


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
