"""The preflight checks (pipelines/preflight.py) as pure functions of a config and a described cluster."""
from __future__ import annotations

from pggan.config import load_config
from pipelines.preflight import SHARED_FS_ENV, ClusterFacts, NodeFacts, problems

SERVER = "http://mlflow.internal:5000"


def cfg(*overrides: str):
    return load_config("tiny.yaml", list(overrides))


def nodes(*specs: tuple[str, float, float]) -> ClusterFacts:
    return ClusterFacts(nodes=tuple(NodeFacts(ip, cpus, gpus) for ip, cpus, gpus in specs))


ONE_NODE = nodes(("10.0.0.1", 4, 0))
THREE_MACHINES = nodes(("10.0.0.1", 4, 0), ("10.0.0.2", 4, 0), ("10.0.0.3", 4, 0))
GPU_MACHINES = nodes(("10.0.0.1", 8, 0), ("10.0.0.2", 48, 4), ("10.0.0.3", 48, 4))
AUTOSCALING_HEAD = ClusterFacts(nodes=(NodeFacts("10.0.0.1", 8, 0),), autoscaling=True)


def test_a_laptop_run_with_local_storage_and_sqlite_tracking_passes():
    assert problems(cfg("storage.root=/data/pggan"), ONE_NODE, "sqlite:////data/pggan/mlflow.db", {}) == []


def test_a_cluster_run_with_s3_storage_and_a_tracking_server_passes():
    good = cfg("storage.root=s3://bucket/pggan", "storage.endpoint_url=http://minio.internal:9000",
               "scaling.cpus_per_worker=4")
    assert problems(good, THREE_MACHINES, SERVER, {}) == []


def test_local_storage_on_several_nodes_names_the_key_and_the_fix():
    [line] = problems(cfg("storage.root=/data/pggan"), THREE_MACHINES, SERVER, {})
    assert line.startswith("storage.root=") and "3 node(s)" in line and "s3://" in line and SHARED_FS_ENV in line
    assert "\n" not in line


def test_local_storage_declared_shared_passes():
    assert problems(cfg("storage.root=/mnt/nfs/pggan"), THREE_MACHINES, SERVER, {SHARED_FS_ENV: "1"}) == []


def test_local_storage_on_an_autoscaling_cluster_with_one_node_so_far_is_refused():
    [line] = problems(cfg("storage.root=/data/pggan"), AUTOSCALING_HEAD, SERVER, {})
    assert "autoscaler" in line and "storage.root" in line


def test_sqlite_tracking_on_several_nodes_asks_for_a_server():
    [line] = problems(cfg("storage.root=s3://b/p", "tracking.uri=sqlite:////tmp/mlflow.db"), THREE_MACHINES,
                      "sqlite:////tmp/mlflow.db", {})
    assert line.startswith("tracking.uri resolves to") and "tracking.uri=http://" in line


def test_empty_tracking_uri_that_defaults_to_sqlite_is_explained_as_the_default():
    [line] = problems(cfg("storage.root=s3://b/p"), THREE_MACHINES, "sqlite:////tmp/mlflow.db", {})
    assert line.startswith("tracking.uri (empty") and "sqlite" in line


def test_loopback_urls_pass_on_one_machine_but_not_across_machines():
    c = cfg("storage.root=s3://b/p", "storage.endpoint_url=http://127.0.0.1:9000")
    one_machine = nodes(("127.0.0.1", 1, 0), ("127.0.0.1", 1, 0), ("127.0.0.1", 1, 0))
    assert problems(c, one_machine, "http://127.0.0.1:5000", {}) == []
    storage, tracking = problems(c, THREE_MACHINES, "http://localhost:5000", {})
    assert storage.startswith("storage.endpoint_url='http://127.0.0.1:9000' is a loopback address")
    assert tracking.startswith("tracking.uri") and "loopback" in tracking


def test_gpus_asked_of_a_cluster_without_gpus_is_refused_with_the_cpu_alternative():
    [line] = problems(cfg("scaling.use_gpu=true"), ONE_NODE, None, {})
    assert line.startswith("scaling.use_gpu=true needs 2 GPUs") and "has 0" in line
    assert "scaling.use_gpu=false" in line and "lower scaling.num_workers" not in line


def test_fewer_gpus_than_workers_suggests_fewer_workers():
    c = cfg("storage.root=s3://b/p", "scaling.use_gpu=true", "scaling.num_workers=16",
            "schedule.batch_size={4: 32, 8: 32}")
    [line] = problems(c, GPU_MACHINES, SERVER, {})
    assert "needs 16 GPUs" in line and "has 8" in line and "scaling.num_workers to 8" in line
    eight = cfg("storage.root=s3://b/p", "scaling.use_gpu=true", "scaling.num_workers=8", "scaling.cpus_per_worker=4")
    assert problems(eight, GPU_MACHINES, SERVER, {}) == []


def test_gpus_on_an_autoscaling_cluster_are_left_to_the_autoscaler():
    assert problems(cfg("storage.root=s3://b/p", "scaling.use_gpu=true"), AUTOSCALING_HEAD, SERVER, {}) == []
    capped = ClusterFacts(nodes=AUTOSCALING_HEAD.nodes, autoscaling=True, max_gpus=1)
    [line] = problems(cfg("storage.root=s3://b/p", "scaling.use_gpu=true"), capped, SERVER, {})
    assert "at most 1" in line


def test_workers_larger_than_any_node_are_refused_before_ray_waits_for_them():
    [line] = problems(cfg("scaling.cpus_per_worker=2"), nodes(("127.0.0.1", 1, 0)), None, {})
    assert line.startswith("scaling.num_workers=2 workers with scaling.cpus_per_worker=2 do not fit")
    assert "at most 1 CPUs on one node" in line
