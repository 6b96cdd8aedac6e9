"""The one-machine multi-node cluster (cluster/local/localcluster.py): nodes, MLflow and S3 up, then nothing left."""

import json
import os
import shlex
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import psutil
import pytest

from cluster.local.localcluster import MARKER, LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

# Submitted as a Ray job: what the cluster looks like from a driver, and what a task on each node sees.
DRIVER = """
import json, os, ray
ray.init()

@ray.remote(num_cpus=0)
def where_and_env():
    return [ray.get_runtime_context().get_node_id(), os.environ.get("AWS_ENDPOINT_URL"),
            os.environ.get("MLFLOW_TRACKING_URI")]

nodes = [{"id": n["NodeID"], "resources": n["Resources"]} for n in ray.nodes() if n["Alive"]]
tasks = {f"node_{i}": ray.get(where_and_env.options(resources={f"node_{i}": 0.01}).remote()) for i in range(3)}
print("RESULT=" + json.dumps({"nodes": nodes, "tasks": tasks}))
"""


def read_env_file(path: Path) -> dict[str, str]:
    """The `export K=V` lines of the cluster's env file, as a user's shell would see them after `source`."""
    pairs = [shlex.split(line)[1] for line in path.read_text().splitlines() if line.startswith("export ")]
    return dict(p.split("=", 1) for p in pairs)


def shell_env(cluster_env: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_", "MLFLOW_"))}
    return {**clean, **cluster_env}


def submit_job(script: Path, env: dict[str, str]) -> dict:
    ray_cli = Path(sys.executable).parent / "ray"
    out = subprocess.run([str(ray_cli), "job", "submit", "--", sys.executable, str(script)], env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, f"ray job submit failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    result = [line for line in out.stdout.splitlines() if line.startswith("RESULT=")]
    assert result, f"the job printed no RESULT line:\n{out.stdout[-3000:]}"
    return json.loads(result[-1].removeprefix("RESULT="))


def port_open(url: str) -> bool:
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def processes_of(root: Path) -> list[psutil.Process]:
    """Processes that name the cluster's directory on their command line or carry its marker; found independently
    of LocalCluster's own bookkeeping."""
    found = []
    for p in psutil.process_iter(["cmdline", "environ"], ad_value=None):
        if str(root) in " ".join(p.info["cmdline"] or []) or (p.info["environ"] or {}).get(MARKER) == str(root):
            found.append(p)
    return found


def alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def check_mlflow(uri: str) -> None:
    assert urllib.request.urlopen(f"{uri}/health", timeout=5).read().strip() == b"OK"
    request = urllib.request.Request(f"{uri}/api/2.0/mlflow/experiments/create", method="POST",
                                     data=json.dumps({"name": "local-cluster-check"}).encode(),
                                     headers={"Content-Type": "application/json"})
    experiment_id = json.loads(urllib.request.urlopen(request, timeout=10).read())["experiment_id"]
    got = urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/get-by-name?experiment_name=local-cluster-check",
                                 timeout=10).read()
    assert json.loads(got)["experiment"]["experiment_id"] == experiment_id


def check_s3(env: dict[str, str], default_bucket: str) -> None:
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    s3.create_bucket(Bucket="made-by-test")
    s3.put_object(Bucket="made-by-test", Key="a/b.txt", Body=b"hello")
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {default_bucket, "made-by-test"}
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="made-by-test")["Contents"]] == ["a/b.txt"]


def test_three_node_cluster_with_mlflow_and_s3_serves_jobs_and_stops_without_leftovers(tmp_path):
    cluster = LocalCluster()
    try:
        cluster.start(num_worker_nodes=2, cpus_per_node=1)
        env = read_env_file(cluster.env_file)
        script = tmp_path / "driver.py"
        script.write_text(DRIVER)
        seen = submit_job(script, shell_env(env))  # via RAY_API_SERVER_ADDRESS and the token, as a user would

        nodes = seen["nodes"]
        assert len(nodes) == 3, nodes
        own = {next(k for k in n["resources"] if k.startswith("node_")): n for n in nodes}
        assert sorted(own) == ["node_0", "node_1", "node_2"], "each node carries its own node_i resource"
        assert all(n["resources"]["CPU"] == 1.0 and n["resources"].get("GPU", 0) == 0 for n in nodes)
        for name, (node_id, endpoint, tracking) in seen["tasks"].items():
            assert node_id == own[name]["id"], f"a task asking for {name} ran elsewhere"
            assert (endpoint, tracking) == (env["AWS_ENDPOINT_URL"], env["MLFLOW_TRACKING_URI"]), (
                f"Ray workers on {name} do not see the cluster's S3/MLflow settings")

        check_mlflow(env["MLFLOW_TRACKING_URI"])
        check_s3(env, cluster.bucket)
        running = processes_of(cluster.root)
        assert len(running) > 10, f"expected the servers, 3 raylets and their helpers, found {running}"
    finally:
        cluster.stop()

    left = [p for p in running + processes_of(cluster.root) if alive(p)]
    assert not left, f"still running after stop(): {[(p.pid, p.name()) for p in left]}"
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL"):
        assert not port_open(env[key]), f"{key} {env[key]} still accepts connections after stop()"
    assert not cluster.root.exists(), "stop() should remove the temporary directory it created"
