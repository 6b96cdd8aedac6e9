"""Multi-node misconfiguration caught before anything runs: storage or tracking that workers on other machines
cannot reach, and workers the cluster can never place (GPUs it does not have). One line per problem, each naming
the key to change and how.

full_run calls `check_cluster(cfg)` right after joining Ray; `problems(cfg, facts, tracking_uri)` is the pure part.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

from pggan import storage as st
from pggan.config import ConfigError, PipelineConfig

SHARED_FS_ENV = "PGGAN_SHARED_FILESYSTEM"   # "1": storage.root is a filesystem every node mounts at the same path
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
READONLY_NODE_TYPE = re.compile(r"node_[0-9a-f]{56}")   # Ray's read-only autoscaler: one "type" per node id


class PreflightError(ConfigError):
    """The cluster cannot run this config; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class NodeFacts:
    """One alive Ray node, as the scheduler sees it."""
    ip: str
    cpus: float
    gpus: float


@dataclass(frozen=True)
class ClusterFacts:
    """What the checks need to know about the Ray cluster the run will use."""
    nodes: tuple[NodeFacts, ...]             # alive now
    autoscaling: bool = False                # an autoscaler may add nodes (ray up, KubeRay)
    max_gpus: float | None = None            # most GPUs the autoscaler may bring up, when it publishes it

    @property
    def multi_node(self) -> bool:
        return len(self.nodes) > 1 or self.autoscaling

    @property
    def one_machine(self) -> bool:
        """Every node on one IP (a laptop's or a test's multi-node cluster): loopback URLs reach all of them."""
        return not self.autoscaling and len({n.ip for n in self.nodes}) <= 1

    def describe(self) -> str:
        text = f"{len(self.nodes)} node(s)"
        return text + " and an autoscaler that adds more" if self.autoscaling else text


# ----------------------------------------------------------------------------------------------------------------
# The checks (pure).

def _storage_problems(cfg: PipelineConfig, facts: ClusterFacts, environ: Mapping[str, str]) -> list[str]:
    protocol, path = st.split_url(cfg.storage.root)
    if protocol == "file" and facts.multi_node and environ.get(SHARED_FS_ENV, "") != "1":
        return [f"storage.root={cfg.storage.root!r} is a local path but the Ray cluster has {facts.describe()}: "
                "workers on other nodes would write checkpoints to their own disks. Set storage.root to shared "
                "object storage (--set storage.root=s3://BUCKET/pggan), or, if the path is a shared filesystem "
                f"mounted at {path} on every node, set {SHARED_FS_ENV}=1 for the job (ray job submit "
                f"--runtime-env-json '{{\"env_vars\": {{\"{SHARED_FS_ENV}\": \"1\"}}}}' ...)"]
    endpoint = cfg.storage.endpoint_url or environ.get("AWS_ENDPOINT_URL", "")
    if protocol != "file" and _is_loopback(endpoint) and facts.multi_node and not facts.one_machine:
        key = "storage.endpoint_url" if cfg.storage.endpoint_url else "AWS_ENDPOINT_URL"
        return [f"{key}={endpoint!r} is a loopback address but the Ray nodes are on several machines "
                f"({facts.describe()}): workers elsewhere cannot reach it. Use the object store's network address "
                "(--set storage.endpoint_url=http://HOST:PORT)"]
    return []


def _tracking_problems(tracking_uri: str | None, explicit: bool, facts: ClusterFacts) -> list[str]:
    if not tracking_uri or not facts.multi_node:
        return []
    key = "tracking.uri" if explicit else "tracking.uri (empty, so MLFLOW_TRACKING_URI or the default)"
    if tracking_uri.startswith("sqlite:"):
        return [f"{key} resolves to {tracking_uri!r}, a SQLite file on the driver's node, but the Ray cluster has "
                f"{facts.describe()}: the rank-0 worker on another node cannot log there. Start an MLflow server "
                "every node can reach and set --set tracking.uri=http://MLFLOW-HOST:5000"]
    if _is_loopback(tracking_uri) and not facts.one_machine:
        return [f"{key} resolves to {tracking_uri!r}, a loopback address, but the Ray nodes are on several "
                f"machines ({facts.describe()}): workers elsewhere cannot reach it. Set --set "
                "tracking.uri=http://MLFLOW-HOST:5000 with the server's network address"]
    return []


def _placement_problems(cfg: PipelineConfig, facts: ClusterFacts) -> list[str]:
    """Workers the scheduler could never place: Ray Train would wait for them until its start timeout."""
    sc = cfg.scaling
    if facts.autoscaling:                    # nodes may come; only a published ceiling can be checked
        if sc.use_gpu and facts.max_gpus is not None and facts.max_gpus < sc.num_workers:
            return [f"scaling.use_gpu=true needs {sc.num_workers} GPUs (scaling.num_workers={sc.num_workers}, one "
                    f"each) but the autoscaler can provide at most {facts.max_gpus:g}: lower scaling.num_workers "
                    "or raise the GPU node group's max workers"]
        return []
    gpus = sum(n.gpus for n in facts.nodes)
    if sc.use_gpu and gpus < sc.num_workers:
        fewer = f", or lower scaling.num_workers to {int(gpus)}" if gpus >= 1 else ""
        return [f"scaling.use_gpu=true needs {sc.num_workers} GPUs (scaling.num_workers={sc.num_workers}, one each) "
                f"but the Ray cluster ({facts.describe()}) has {gpus:g}: set --set scaling.use_gpu=false to train "
                f"on CPUs{fewer}, or add GPU nodes"]
    slots = sum(_workers_fitting(n, sc.cpus_per_worker, sc.use_gpu) for n in facts.nodes)
    if slots < sc.num_workers:
        biggest = max((n.cpus for n in facts.nodes), default=0)
        return [f"scaling.num_workers={sc.num_workers} workers with scaling.cpus_per_worker={sc.cpus_per_worker:g} "
                f"do not fit on the Ray cluster ({facts.describe()}, at most {biggest:g} CPUs on one node; "
                f"{slots} fit): lower scaling.cpus_per_worker or scaling.num_workers, or add nodes"]
    return []


def _workers_fitting(node: NodeFacts, cpus_per_worker: float, use_gpu: bool) -> int:
    fit = math.floor(node.cpus / cpus_per_worker + 1e-9) if cpus_per_worker > 0 else 10**6
    return min(fit, math.floor(node.gpus + 1e-9)) if use_gpu else fit


def _is_loopback(url: str) -> bool:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def problems(cfg: PipelineConfig, facts: ClusterFacts, tracking_uri: str | None,
             environ: Mapping[str, str] | None = None) -> list[str]:
    """Every reason `cfg` cannot run on the cluster described by `facts`, one line each ([] = fine).

    tracking_uri: where runs will be logged (resolved; None = unknown or tracking off)."""
    environ = os.environ if environ is None else environ
    return (_storage_problems(cfg, facts, environ)
            + _tracking_problems(tracking_uri, bool(cfg.tracking.uri), facts)
            + _placement_problems(cfg, facts))


# ----------------------------------------------------------------------------------------------------------------
# Asking Ray.

def cluster_facts() -> ClusterFacts:
    """The cluster the driver is connected to (ray.init done): alive nodes, and whether an autoscaler runs."""
    import ray

    nodes = tuple(NodeFacts(ip=n["NodeManagerAddress"], cpus=float(n["Resources"].get("CPU", 0)),
                            gpus=float(n["Resources"].get("GPU", 0))) for n in ray.nodes() if n["Alive"])
    autoscaling, max_gpus = _autoscaler()
    return ClusterFacts(nodes=nodes, autoscaling=autoscaling, max_gpus=max_gpus)


def _autoscaler() -> tuple[bool, float | None]:
    """(an autoscaler runs, the most GPUs it publishes it may provide or None). v1 (ray up, KubeRay by default)
    writes an `autoscaler_report` into its status; v2 sets its own flag; either may publish a cluster config."""
    try:  # Ray-internal state: if a future Ray moves it, skip the autoscaler-aware part rather than fail the run
        from ray._private import ray_constants
        from ray._private.state import state
        from ray.autoscaler.v2.utils import is_autoscaler_v2
        from ray.experimental.internal_kv import _internal_kv_get

        status = json.loads(_internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS) or "{}")
        running = _v1_scales(status.get("autoscaler_report") or {}) or is_autoscaler_v2(fetch_from_server=True)
        max_resources = state.get_max_resources_from_cluster_config() if running else None
    except Exception as e:
        print(f"[preflight] warning: could not tell whether an autoscaler runs ({type(e).__name__}: {e}); "
              "assuming none")
        return False, None
    return running, (float(max_resources.get("GPU", 0)) if max_resources else None)


def _v1_scales(report: Mapping) -> bool:
    """Whether a v1 autoscaler report comes from a real autoscaler: with no autoscaling config (a plain
    `ray start --head`) the monitor runs read-only and names each node's type after its id, 'node_<hex id>'."""
    types = {*(report.get("active_nodes") or {}), *(report.get("idle_nodes") or {}),
             *(report.get("pending_launches") or {})}
    return any(not READONLY_NODE_TYPE.fullmatch(t) for t in types)


def resolved_tracking_uri(cfg: PipelineConfig) -> str | None:
    """Where the run's MLflow logging goes; None where tracking is not set up (its own check reports why)."""
    try:
        from pggan.tracking.client import TrackingError, resolve_tracking_uri
    except ModuleNotFoundError:
        return None
    try:
        return resolve_tracking_uri(cfg)
    except TrackingError:
        return None


def check_cluster(cfg: PipelineConfig) -> ClusterFacts:
    """Raise PreflightError (one line per problem) unless `cfg` can run on the connected Ray cluster."""
    facts = cluster_facts()
    found = problems(cfg, facts, resolved_tracking_uri(cfg))
    if found:
        raise PreflightError(found)
    return facts
