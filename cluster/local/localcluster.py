"""A multi-node Ray cluster on one machine, with an MLflow server and an S3 server (moto) beside it, for tests and trials.

    python cluster/local/localcluster.py start [--worker-nodes 2] [--cpus-per-node 1] [--root DIR]
    source DIR/cluster.env          # RAY_ADDRESS, RAY_API_SERVER_ADDRESS, MLFLOW_TRACKING_URI, AWS_* ...
    ray job submit --working-dir . -- python pipelines/full_run.py --set storage.root=s3://pggan/demo ...
    python cluster/local/localcluster.py stop [--root DIR]

In Python (tests): `with LocalCluster() as c: c.start(num_worker_nodes=2); ...` or start()/stop();
`c.stop_node(i)` kills worker node i abruptly (a machine lost mid-run), `c.node_ids()` maps node index -> Ray node id.

Every process it starts (and every process those start: raylets, Ray workers, job drivers, uvicorn workers) carries
PGGAN_LOCAL_CLUSTER=<root> in its environment; stop() ends exactly those. It never runs `ray stop`, which would end
every Ray on the machine, other people's included. All servers listen on 127.0.0.1 at free ports, and Ray uses
token authentication with a fresh token, so several of these clusters can run side by side.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MARKER = "PGGAN_LOCAL_CLUSTER"
NODE_MARKER = "PGGAN_LOCAL_NODE"           # the node index (0 = head), inherited by everything a raylet starts
HOST = "127.0.0.1"
S3_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
BIN = Path(sys.executable).parent          # the venv's bin/: its `ray` and `mlflow` run this same Python
# Variables from the caller's environment that would point the cluster's processes somewhere else.
INHERITED_NOT = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN_PATH", "MLFLOW_TRACKING_URI",
                 "AWS_ENDPOINT_URL", "AWS_PROFILE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the process that started it dies (Linux), so a crashed test cleans up."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 2.0) -> bytes:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def cluster_processes(root: str | Path, node: int | None = None) -> list[psutil.Process]:
    """Every live process whose environment says it belongs to the cluster under `root` (to its node `node`)."""
    root, me = str(root), os.getpid()
    found = []
    for p in psutil.process_iter(["environ"], ad_value=None):
        env = p.info["environ"] or {}
        if p.pid != me and env.get(MARKER) == root and (node is None or env.get(NODE_MARKER) == str(node)):
            found.append(p)
    return found


def signal_and_wait(procs: list[psutil.Process], timeout_s: float, kill: bool = True) -> list[psutil.Process]:
    """SIGKILL (or SIGTERM with kill=False) each process, ignoring those gone already; wait up to `timeout_s`
    for them to end and return the ones still alive."""
    for p in procs:
        try:
            (p.kill if kill else p.terminate)()
        except psutil.NoSuchProcess:
            pass
    return psutil.wait_procs(procs, timeout=timeout_s)[1]


def stop_cluster(root: str | Path, grace_s: float = 10.0) -> None:
    """End every process of the cluster under `root`: SIGTERM, then SIGKILL what is left after `grace_s`."""
    alive = signal_and_wait(cluster_processes(root), grace_s, kill=False)
    # A SIGTERMed Ray node may start helpers while going down; sweep until nothing of the cluster is left.
    for _ in range(5):
        alive = [p for p in set(alive) | set(cluster_processes(root)) if p.is_running()]
        if not alive:
            return
        signal_and_wait(alive, 5)
    left = [f"{p.pid} {' '.join(p.cmdline()[:3])}" for p in cluster_processes(root)]
    if left:
        raise RuntimeError(f"processes of the local cluster under {root} survived SIGKILL: {left}")


@dataclass
class Service:
    """One process that LocalCluster started, with the log its output goes to."""

    name: str
    proc: subprocess.Popen
    log: Path

    def log_tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class ServiceExited(RuntimeError):
    """A service of the local cluster exited while it was starting."""

    def __init__(self, service: Service, waiting_for: str):
        super().__init__(f"{service.name} exited with code {service.proc.returncode} while waiting for "
                         f"{waiting_for}; the end of {service.log}:\n{service.log_tail()}")
        self.service = service


@dataclass
class LocalCluster:
    """A head and N worker Ray nodes (own temp dir, own token), an MLflow server (SQLite, local artifacts) and a
    moto S3 server with one bucket, all on loopback; `env` holds the variables that point clients at them."""

    root: Path | None = None                # state, logs, the SQLite database; a fresh /tmp dir when None
    bucket: str = "pggan"                   # created on the S3 server at start
    object_store_mb: int = 256              # per node; small, because /dev/shm is shared by every node here
    stop_with_parent: bool = True           # end the servers if the starting process dies (False for the CLI)
    timeout_s: float = 120.0                # for everything to come up
    env: dict[str, str] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)

    def __post_init__(self) -> None:
        # /tmp and a short name: Ray puts unix sockets under root/ray/session_*/sockets (a path limit of 107 bytes).
        self._owns_root = self.root is None
        self.root = Path(self.root or tempfile.mkdtemp(prefix="pggan-lc-", dir="/tmp")).resolve()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def env_file(self) -> Path:
        return self.root / "cluster.env"

    @property
    def dashboard_url(self) -> str:
        return self.env["RAY_API_SERVER_ADDRESS"]

    # ------------------------------------------------------------------ start

    def start(self, num_worker_nodes: int = 2, cpus_per_node: int = 1) -> LocalCluster:
        """Start everything and return once every node is alive, MLflow answers /health and the bucket exists.
        Nodes get custom resources node_0 (the head), node_1 ... node_N, one unit each, to place work by node."""
        if cluster_processes(self.root):
            raise RuntimeError(f"a local cluster is already running under {self.root}; stop it first "
                               f"(python cluster/local/localcluster.py stop --root {self.root})")
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self.env = self._client_env()
        try:
            self._spawn("moto", [sys.executable, "-m", "moto.server", "-H", HOST, "-p", self._port("AWS_ENDPOINT_URL")])
            # MLflow's job runner (7 queue consumers, for GenAI jobs) is not needed here and costs CPU.
            self._spawn("mlflow", self._mlflow_command(), MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
            # One node at a time: on a loaded 2-core machine, raylets starting together miss Ray's fixed 30 s
            # registration deadline.
            for index in range(num_worker_nodes + 1):
                self._start_node(index, cpus_per_node)
            self._wait_for("the S3 server", lambda: self._answers(self.env["AWS_ENDPOINT_URL"] + "/moto-api/"))
            self._make_bucket()
            self._wait_for("the MLflow server", lambda: self._answers(self.env["MLFLOW_TRACKING_URI"] + "/health"))
        except BaseException:
            self.stop(keep_files=True)  # the error names logs under root: keep them
            raise
        self._write_env_file()
        return self

    def _client_env(self) -> dict[str, str]:
        """The variables a client (driver, `ray job` CLI, mlflow, boto3) needs to use this cluster."""
        gcs, dashboard, mlflow, s3 = (free_port() for _ in range(4))
        return {
            "RAY_ADDRESS": f"{HOST}:{gcs}",                          # ray.init() in a driver
            "RAY_API_SERVER_ADDRESS": f"http://{HOST}:{dashboard}",  # the `ray job` CLI
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "MLFLOW_TRACKING_URI": f"http://{HOST}:{mlflow}",
            "AWS_ENDPOINT_URL": f"http://{HOST}:{s3}",
            **S3_KEYS,
        }

    def _port(self, key: str) -> str:
        return self.env[key].rsplit(":", 1)[1]

    def _service_env(self) -> dict[str, str]:
        """The servers' environment: the client variables (so Ray workers and job drivers inherit S3 and MLflow
        settings, which `ray job submit` would not pass on) and the marker that stop() looks for."""
        env = {k: v for k, v in os.environ.items() if k not in INHERITED_NOT}
        env.update(self.env)
        env.pop("RAY_ADDRESS")  # `ray start --head` would take it as a cluster to join
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # a job's `python ...` is this environment's
        env.update({MARKER: str(self.root), "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1",
                    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"})  # on SIGTERM a node drains first: 10+ s
        return env

    def _spawn(self, name: str, command: list[str], **extra_env: str) -> None:
        log = self.root / "logs" / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(command, env={**self._service_env(), **extra_env}, cwd=self.root, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=_die_with_parent if self.stop_with_parent else None)
        self.services.append(Service(name, proc, log))

    def _mlflow_command(self) -> list[str]:
        store = self.root / "mlflow"
        store.mkdir(exist_ok=True)
        return [str(BIN / "mlflow"), "server", "--host", HOST, "--port", self._port("MLFLOW_TRACKING_URI"),
                "--workers", "1",  # one is plenty here and starts in a third of the time of the default four
                "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                "--artifacts-destination", str(store / "artifacts")]

    def _node_args(self, index: int, cpus: int) -> list[str]:
        # Each node needs its own dashboard-agent port: the default (52365) is one per machine.
        return ["--block", "--node-ip-address", HOST, "--num-cpus", str(cpus), "--num-gpus", "0",
                "--resources", json.dumps({f"node_{index}": 1}),
                "--object-store-memory", str(self.object_store_mb * 2**20),
                "--dashboard-agent-listen-port", str(free_port()), "--disable-usage-stats"]

    def _head_command(self, cpus: int) -> list[str]:
        return [str(BIN / "ray"), "start", "--head", "--port", self._port("RAY_ADDRESS"),
                "--temp-dir", str(self.root / "ray"), "--include-dashboard", "true",
                "--dashboard-host", HOST, "--dashboard-port", self._port("RAY_API_SERVER_ADDRESS"),
                "--ray-client-server-port", str(free_port()), *self._node_args(0, cpus)]

    def _worker_command(self, index: int, cpus: int) -> list[str]:
        # Its own temp dir, as its own disk on a real cluster: nodes sharing one would share runtime_resources/,
        # where each node's agent re-extracts a job's working_dir, deleting it under the running job driver.
        return [str(BIN / "ray"), "start", "--address", self.env["RAY_ADDRESS"],
                "--temp-dir", str(self.root / f"ray-{index}"), *self._node_args(index, cpus)]

    def _start_node(self, index: int, cpus: int, attempts: int = 3) -> None:
        """Start Ray node `index` (0 = the head) and wait until the head counts index + 1 alive nodes; retry a
        node that gave up starting (with fresh ports)."""
        name = "ray-head" if index == 0 else f"ray-node-{index}"
        for attempt in range(1, attempts + 1):
            command = self._head_command(cpus) if index == 0 else self._worker_command(index, cpus)
            self._spawn(name, command, **{NODE_MARKER: str(index)})
            try:
                self._wait_for(f"Ray node {name}", lambda: self.alive_node_count() > index)
                return
            except ServiceExited as e:
                if e.service.name != name or attempt == attempts:
                    raise
                self.services.remove(e.service)

    def _wait_for(self, what: str, ready) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            dead = [s for s in self.services if s.proc.poll() is not None]
            if dead:
                raise ServiceExited(dead[0], what)
            if ready():
                return
            time.sleep(0.5)
        tails = "\n".join(f"--- {s.log}\n{s.log_tail(5)}" for s in self.services)
        raise TimeoutError(f"{what} did not come up within {self.timeout_s:.0f} s (a busy machine? raise "
                           f"timeout_s); the logs under {self.root / 'logs'} end with:\n{tails}")

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            http_get(url)
            return True
        except (OSError, urllib.error.URLError):
            return False

    def alive_node_count(self) -> int:
        """Alive Ray nodes according to the head's dashboard (0 while it is not up yet)."""
        auth = {"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"}
        try:
            body = json.loads(http_get(self.dashboard_url + "/api/v0/nodes?limit=1000", auth))
        except (OSError, urllib.error.URLError, ValueError):
            return 0
        return sum(1 for n in body["data"]["result"]["result"] if n["state"] == "ALIVE")

    def node_ids(self) -> dict[int, str]:
        """Alive nodes as {index: Ray node id} (index 0 is the head), from each node's node_<index> resource."""
        auth = {"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"}
        body = json.loads(http_get(self.dashboard_url + "/api/v0/nodes?limit=1000&detail=true", auth, timeout=10))
        found = {}
        for n in body["data"]["result"]["result"]:
            own = [k for k in n.get("resources_total", {}) if k.startswith("node_")]
            if n["state"] == "ALIVE" and own:
                found[int(own[0].removeprefix("node_"))] = n["node_id"]
        return found

    def _make_bucket(self) -> None:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL"], region_name=S3_KEYS["AWS_REGION"],
                          aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"])
        s3.create_bucket(Bucket=self.bucket)

    def _write_env_file(self) -> None:
        lines = [f"# Local PGGAN cluster under {self.root}: `source` this file, then e.g.",
                 "#   ray job submit --working-dir . -- python pipelines/full_run.py "
                 f"--set storage.root=s3://{self.bucket}/demo --set tracking.uri=$MLFLOW_TRACKING_URI",
                 f"# Stop it with: {shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).resolve()))} stop "
                 f"--root {shlex.quote(str(self.root))}"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in self.env.items()]
        self.env_file.write_text("\n".join(lines) + "\n")
        self.env_file.chmod(0o600)  # it holds the cluster's token

    # ------------------------------------------------------------------ stop

    def processes(self) -> list[psutil.Process]:
        """Every live process of this cluster (servers, Ray nodes, their workers and job drivers)."""
        return cluster_processes(self.root)

    def stop_node(self, index: int) -> None:
        """Kill worker node `index` (1 ... N) the way a lost machine goes: SIGKILL to its `ray start`, raylet, and
        every worker and helper it started, with no drain. The head (0) is the cluster: stop() ends it."""
        if index == 0:
            raise ValueError("stop_node(0) would kill the head, which ends the whole cluster; use stop()")
        procs = cluster_processes(self.root, node=index)
        if not procs:
            raise ValueError(f"no running process belongs to node {index} of the cluster under {self.root} "
                             f"(worker nodes are 1 ... N; stopped already?)")
        signal_and_wait(procs, 10)
        for s in self.services:
            if s.name == f"ray-node-{index}" and s.proc.poll() is None:
                s.proc.wait(timeout=10)                         # reap our own `ray start` child

    def stop(self, keep_files: bool = False) -> None:
        """End every process of the cluster and reap the ones started here; delete root if it was made here."""
        stop_cluster(self.root)
        for s in self.services:
            s.proc.wait(timeout=10)
        self.services.clear()
        if self._owns_root and not keep_files:
            shutil.rmtree(self.root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / f"pggan-lc-{os.getuid()}",
                        help="state and log directory (default: %(default)s)")
    parser.add_argument("--worker-nodes", type=int, default=2)
    parser.add_argument("--cpus-per-node", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "stop":
        stop_cluster(args.root)
        print(f"stopped the local cluster under {args.root}")
        return
    cluster = LocalCluster(root=args.root, stop_with_parent=False)
    cluster.start(num_worker_nodes=args.worker_nodes, cpus_per_node=args.cpus_per_node)
    print(f"local cluster up: {args.worker_nodes + 1} Ray nodes, dashboard {cluster.dashboard_url}, "
          f"MLflow {cluster.env['MLFLOW_TRACKING_URI']}, S3 {cluster.env['AWS_ENDPOINT_URL']} "
          f"(bucket {cluster.bucket})\nsource {cluster.env_file}")


if __name__ == "__main__":
    main()
