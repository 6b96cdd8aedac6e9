"""The preflight checks against a real single-node Ray (the session's `ray_local`): what they read off the cluster,
and a GPU request the cluster cannot serve refused before anything runs. Multi-node cases: test_multinode.py."""
from __future__ import annotations

import json
import time

import pytest

from pggan.config import load_config
from pipelines.preflight import PreflightError, check_cluster, cluster_facts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def wait_for_monitor_report(timeout_s: float = 30) -> None:
    """The head's monitor writes its first status a few seconds after start; the facts must read it right."""
    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
        if status and "autoscaler_report" in json.loads(status):
            return
        time.sleep(0.5)
    pytest.fail("the Ray monitor wrote no autoscaler report")


def test_a_private_local_ray_is_one_node_without_an_autoscaler(ray_local, tmp_path):
    wait_for_monitor_report()
    facts = cluster_facts()
    assert len(facts.nodes) == 1 and facts.nodes[0].cpus == 4
    assert not facts.autoscaling and not facts.multi_node, "a plain head's read-only monitor is no autoscaler"
    cfg = load_config("tiny.yaml", [f"storage.root={tmp_path}", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"])
    assert check_cluster(cfg) == facts, "a laptop run with local storage and SQLite tracking must pass"


def test_more_gpu_workers_than_the_cluster_has_gpus_is_refused(ray_local, tmp_path):
    gpus = int(sum(n.gpus for n in cluster_facts().nodes))      # 0 here; also right on a machine with GPUs
    workers = gpus + 1
    cfg = load_config("tiny.yaml", [f"storage.root={tmp_path}", "scaling.use_gpu=true",
                                    f"scaling.num_workers={workers}",
                                    f"schedule.batch_size={{4: {16 * workers}, 8: {16 * workers}}}"])
    with pytest.raises(PreflightError) as refused:
        check_cluster(cfg)
    [line] = refused.value.problems
    assert line.startswith(f"scaling.use_gpu=true needs {workers} GPUs") and f"has {gpus}" in line
    assert "scaling.use_gpu=false" in line


def test_workers_of_a_private_ray_reach_its_own_state_api(ray_local):
    """Ray Train's placement-group cleaner runs in a worker and asks the state API whether the Train controller is
    alive. A private Ray (pipelines.runtime.start_private_ray) must answer it from its own dashboard: without one,
    every check fails; aimed at another Ray on the machine, a live controller would look dead and the stage's
    placement group would be removed under it."""
    import ray

    @ray.remote(num_cpus=0)
    class Probe:
        def ping(self) -> bool:
            return True

    @ray.remote(num_cpus=0)
    def alive_from_a_worker(actor_id: str) -> bool:
        from ray.util.state import get_actor

        state = get_actor(actor_id, timeout=10)
        return state is not None and state.state == "ALIVE"

    probe = Probe.remote()
    assert ray.get(probe.ping.remote())
    assert ray.get(alive_from_a_worker.remote(probe._actor_id.hex()), timeout=60)
    ray.kill(probe)
