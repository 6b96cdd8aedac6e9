"""The one-machine multi-node cluster (cluster/local/localcluster.py): nodes, MLflow and S3 up; a full run submitted
with `ray job submit` to it: S3 storage, an MLflow server, training workers spread over nodes; a worker node lost
mid-stage; misconfiguration refused; then stop() leaves nothing behind.

One cluster for the whole module (starting one takes a minute or two here): the tests run in file order, the
first checks the fresh cluster, the last stops it."""
from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import psutil
import pytest

from cluster.local.localcluster import MARKER, LocalCluster
from pggan import storage as st
from pggan.checkpoint import load_checkpoint
from pggan.config import StorageConfig
from pggan.stage_log import read_jsonl
from pggan.tracking.client import client_for
from pggan.tracking.registry import ALIAS_CHAMPION, ALIAS_NEWEST

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
# What a user of a CPU cluster would set: one training worker per 1-CPU node (its whole CPU), so the two workers
# of a stage always run on two different machines; storage and tracking every node can reach.
SPREAD = ["--set", "scaling.num_workers=2", "--set", "scaling.cpus_per_worker=1", "--set", "scaling.max_failures=2"]
WORKER_NODES = 3


@pytest.fixture(scope="module")
def cluster():
    """Head + 3 one-CPU worker nodes, MLflow and S3 servers; shared by the module's tests (one start: ~1-2 min).
    The last test stops it and checks what is left; stopping again here is a no-op."""
    c = LocalCluster(timeout_s=300)
    try:
        c.start(num_worker_nodes=WORKER_NODES, cpus_per_node=1)
        yield c
    finally:
        c.stop()


# ----------------------------------------------------------------------------------------------------------------
# Helpers: the cluster as a user and as the OS see it.

# Submitted as a Ray job: what the cluster looks like from a driver, and what a task on each node sees.
DRIVER = """
import json, os, ray
ray.init()

@ray.remote(num_cpus=0)
def where_and_env():
    return [ray.get_runtime_context().get_node_id(), os.environ.get("AWS_ENDPOINT_URL"),
            os.environ.get("MLFLOW_TRACKING_URI")]

nodes = [{"id": n["NodeID"], "resources": n["Resources"]} for n in ray.nodes() if n["Alive"]]
tasks = {f"node_{i}": ray.get(where_and_env.options(resources={f"node_{i}": 0.01}).remote())
         for i in range(len(nodes))}
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


# ----------------------------------------------------------------------------------------------------------------
# Helpers: jobs through the `ray job` CLI and the job REST API; reading what the run left in S3 and MLflow.

def cli_env(c: LocalCluster) -> dict[str, str]:
    """A user's shell after `source cluster.env`: nothing else of Ray, AWS or MLflow."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_", "MLFLOW_"))}
    return {**clean, **c.env}


def submit(c: LocalCluster, args: list[str]) -> str:
    """`ray job submit --no-wait --working-dir <repo> -- python pipelines/full_run.py ARGS`; returns the job id."""
    job_id = f"pggan-{uuid.uuid4().hex[:8]}"
    command = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--no-wait", "--submission-id", job_id,
               "--working-dir", str(REPO), "--", "python", "pipelines/full_run.py", *args]
    out = subprocess.run(command, env=cli_env(c), cwd=REPO, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, f"ray job submit failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return job_id


def job_api(c: LocalCluster, path: str) -> dict:
    request = urllib.request.Request(f"{c.dashboard_url}/api/jobs/{path}",
                                     headers={"Authorization": f"Bearer {c.env['RAY_AUTH_TOKEN']}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_job(c: LocalCluster, job_id: str, timeout_s: float = 600) -> tuple[str, str, str]:
    """(status, message, logs) once the job ends."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = job_api(c, job_id)
        if info["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            return info["status"], info.get("message") or "", job_api(c, f"{job_id}/logs")["logs"]
        time.sleep(2)
    logs = job_api(c, f"{job_id}/logs")["logs"]
    pytest.fail(f"job {job_id} did not finish within {timeout_s:g} s; its log ends:\n{logs[-4000:]}")


def wait_for_checkpoints(c: LocalCluster, job_id: str, url: str, count: int, timeout_s: float = 420) -> None:
    """Until `count` checkpoint folders exist under `url` (the newest may still be uploading, the ones before it
    are registered with Ray Train)."""
    fs, path = st.fsspec_filesystem(url, s3_storage(c))
    deadline = time.monotonic() + timeout_s
    while len(fs.glob(f"{path}/nimg-*")) < count:
        assert time.monotonic() < deadline, f"no {count} checkpoints under {url} within {timeout_s:g} s"
        info = job_api(c, job_id)
        assert info["status"] in ("PENDING", "RUNNING"), job_api(c, f"{job_id}/logs")["logs"][-4000:]
        time.sleep(0.5)
        fs.invalidate_cache()


def s3_storage(c: LocalCluster) -> StorageConfig:
    return StorageConfig(endpoint_url=c.env["AWS_ENDPOINT_URL"], region=c.env["AWS_REGION"],
                         access_key_id=c.env["AWS_ACCESS_KEY_ID"], secret_access_key=c.env["AWS_SECRET_ACCESS_KEY"])


def run_args(c: LocalCluster, name: str, *extra: str) -> tuple[list[str], str]:
    """full_run arguments for run `name` under s3://bucket/name, tracked on the cluster's MLflow server."""
    root = f"s3://{c.bucket}/{name}"
    args = ["--config", "pipelines/configs/tiny.yaml", "--run-id", name,
            "--set", f"storage.root={root}", "--set", f"storage.endpoint_url={c.env['AWS_ENDPOINT_URL']}",
            "--set", f"tracking.uri={c.env['MLFLOW_TRACKING_URI']}",
            "--set", f"tracking.experiment=exp-{name}", "--set", f"tracking.model_name=model-{name}",
            *SPREAD, *extra]
    return args, root


def stage_log(root: str, name: str, res: int, file: str) -> str:
    return st.join(root, "runs", name, "logs", f"r{res:04d}", file)


def assert_run_complete(c: LocalCluster, root: str, name: str, stages: list[int]) -> dict:
    """run.json says done with every stage done; each stage's final checkpoint loads (checksum verified);
    MLflow has the finished parent run and the registered generator with its aliases. Returns the manifest."""
    storage = s3_storage(c)
    run = st.read_json(st.join(root, "runs", name, "run.json"), storage)
    assert run is not None and run["status"] == "done", f"run manifest: {run}"
    assert sorted(int(r) for r in run["stages"]) == stages
    for res in stages:
        entry = run["stages"][str(res)]
        assert entry["status"] == "done" and entry["checkpoint"].startswith(f"s3://{c.bucket}/"), entry
        state = load_checkpoint(entry["checkpoint"], storage)
        assert state["resolution"] == res and state["stage_nimg"] == entry["nimg"] > 0
        assert set(entry["metrics"]) >= {"swd_avg", "ms_ssim"}
        assert st.exists(entry["samples"], storage)

    client = client_for(c.env["MLFLOW_TRACKING_URI"])
    tracking = run["tracking"]
    parent = client.get_run(tracking["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["pggan.run_id"] == name
    model = f"model-{name}"
    assert tracking.get("model_version") == f"{model}/1", f"run.json tracking: {tracking}"
    for alias in (ALIAS_NEWEST, ALIAS_CHAMPION):
        version = client.get_model_version_by_alias(model, alias)
        assert version.version == "1" and version.tags["pggan.run_id"] == name
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(int(r.data.tags["pggan.stage"]) for r in children) == stages
    return run


# ----------------------------------------------------------------------------------------------------------------

def test_cluster_with_mlflow_and_s3_serves_jobs_on_every_node(cluster, tmp_path):
    """The fresh cluster (before any other test here uses it): a job sees every node with its node_i resource, tasks
    land where asked and see the cluster's S3/MLflow settings; MLflow and S3 answer; the processes are there."""
    env = read_env_file(cluster.env_file)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    seen = submit_job(script, shell_env(env))  # via RAY_API_SERVER_ADDRESS and the token, as a user would

    nodes = seen["nodes"]
    assert len(nodes) == WORKER_NODES + 1, nodes
    own = {next(k for k in n["resources"] if k.startswith("node_")): n for n in nodes}
    assert sorted(own) == [f"node_{i}" for i in range(WORKER_NODES + 1)], "each node carries its own node_i resource"
    assert all(n["resources"]["CPU"] == 1.0 and n["resources"].get("GPU", 0) == 0 for n in nodes)
    assert sorted(seen["tasks"]) == sorted(own), seen["tasks"]
    for name, (node_id, endpoint, tracking) in seen["tasks"].items():
        assert node_id == own[name]["id"], f"a task asking for {name} ran elsewhere"
        assert (endpoint, tracking) == (env["AWS_ENDPOINT_URL"], env["MLFLOW_TRACKING_URI"]), (
            f"Ray workers on {name} do not see the cluster's S3/MLflow settings")

    check_mlflow(env["MLFLOW_TRACKING_URI"])
    check_s3(env, cluster.bucket)
    running = processes_of(cluster.root)
    assert len(running) > 10, f"expected the servers, {WORKER_NODES + 1} raylets and their helpers, found {running}"


def test_misconfigured_run_is_refused_before_training_with_one_line_per_problem(cluster, tmp_path):
    local_root = tmp_path / "root"
    job = submit(cluster, ["--config", "pipelines/configs/tiny.yaml", "--run-id", "refused",
                           "--set", f"storage.root={local_root}",
                           "--set", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                           "--set", "scaling.use_gpu=true"])
    status, message, logs = wait_job(cluster, job, timeout_s=240)

    assert status == "FAILED" and "exit code 2" in message, (status, message, logs[-3000:])
    errors = [line for line in logs.splitlines() if line.startswith("full_run: error: ")]
    assert len(errors) == 3, logs[-3000:]
    storage, tracking, gpu = errors
    assert "storage.root=" in storage and f"{len(cluster.node_ids())} node(s)" in storage and "s3://" in storage
    assert "tracking.uri" in tracking and "sqlite" in tracking and "MLflow server" in tracking
    assert "scaling.use_gpu=true" in gpu and "has 0" in gpu and "scaling.use_gpu=false" in gpu
    assert not (local_root / "runs").exists() and not (local_root / "datasets").exists(), "nothing may run first"
    assert "Traceback" not in logs


def test_full_run_spreads_over_nodes_survives_losing_one_mid_stage_and_registers_the_model(cluster):
    """One single-stage run (4x4) for all of it: a second run, or a second stage, would add minutes here.
    After the stage's second checkpoint, a worker node that hosts a rank is killed."""
    name = f"multi-{uuid.uuid4().hex[:6]}"
    # 3 kimg with a checkpoint every 0.25: ~10 s of steps left after the second checkpoint to lose a node in.
    args, root = run_args(cluster, name, "--set", "data.resolution=4", "--set", "schedule.ckpt_kimg=0.25",
                          "--set", "schedule.stabilize_kimg_per_res={4: 3}")
    storage = s3_storage(cluster)
    job = submit(cluster, args)
    wait_for_checkpoints(cluster, job, st.join(root, "runs", name, "stages", "r0004"), count=2)

    cluster_nodes = cluster.node_ids()
    started = read_jsonl(stage_log(root, name, 4, "resume.jsonl"), storage)[-1]
    assert started["source"] == "fresh" and len(set(started["nodes"])) == 2, f"both ranks on one node: {started}"
    assert set(started["nodes"]) <= set(cluster_nodes.values())
    lost = next(n for n in reversed(started["nodes"]) if n != cluster_nodes[0])
    cluster.stop_node({v: k for k, v in cluster_nodes.items()}[lost])
    status, message, logs = wait_job(cluster, job)
    assert status == "SUCCEEDED", f"{message}\n{logs[-4000:]}"

    restarts = read_jsonl(stage_log(root, name, 4, "resume.jsonl"), storage)
    resumed = [r for r in restarts if r["source"] == "checkpoint"]
    assert resumed, f"the stage never resumed from a checkpoint: {restarts}"
    assert resumed[-1]["nimg"] > 0 and f"nimg-{resumed[-1]['nimg']:010d}" in resumed[-1]["from"]
    assert lost not in resumed[-1]["nodes"] and len(set(resumed[-1]["nodes"])) == 2, resumed[-1]
    ranks = st.read_json(stage_log(root, name, 4, "ranks.json"), storage)["ranks"]
    assert lost not in {r["node"] for r in ranks} and len({r["params"] for r in ranks}) == 1, ranks
    assert_run_complete(cluster, root, name, [4])
    assert cluster.alive_node_count() == 3, "the lost node should be gone from the cluster"


def test_stop_leaves_no_process_port_or_directory(cluster):
    """Last: stop() the module's cluster (after a lost node and several jobs) and look for anything left."""
    env = read_env_file(cluster.env_file)
    running = processes_of(cluster.root)
    assert running, "the cluster's processes should be running before stop()"
    cluster.stop()

    left = [p for p in running + processes_of(cluster.root) if alive(p)]
    assert not left, f"still running after stop(): {[(p.pid, p.name()) for p in left]}"
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL"):
        assert not port_open(env[key]), f"{key} {env[key]} still accepts connections after stop()"
    assert not cluster.root.exists(), "stop() should remove the temporary directory it created"
