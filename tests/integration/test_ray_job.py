"""As a user runs it: `ray start --head`, then `ray job submit --working-dir . -- python pipelines/full_run.py`
with storage on S3 (a moto server); the job succeeds and the run manifest in the bucket is complete."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cluster.local.localcluster import MARKER, stop_cluster
from pggan import storage as st
from s3server import free_port
from train_helpers import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

BIN = Path(sys.executable).parent
S3_KEYS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")


@pytest.fixture
def ray_head(tmp_path):
    """A one-node Ray head on loopback with its own temp dir and token; yields the env for the `ray` CLI."""
    root = Path("/tmp") / f"pggan-job-{secrets.token_hex(3)}"       # short: Ray's socket paths are limited
    root.mkdir()
    gcs, dashboard = free_port(), free_port()
    client = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
              "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dashboard}"}
    # The head does not get the S3 settings: the job must bring them (--runtime-env-json), as a user's would.
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH", *S3_KEYS)}
    env.update(client, **{MARKER: str(root), "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                          "RAY_USAGE_STATS_ENABLED": "0"})
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--port", str(gcs), "--temp-dir", str(root / "ray"),
           "--node-ip-address", "127.0.0.1", "--num-cpus", "4", "--num-gpus", "0", "--include-dashboard", "true",
           "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--disable-usage-stats",
           "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
           "--object-store-memory", str(256 << 20)]
    with open(root / "head.log", "wb") as log:
        head = subprocess.Popen(cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not _answers(client):
            assert head.poll() is None, (root / "head.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the Ray head did not come up in 180 s"
            time.sleep(1)
        yield {**{k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}, **client}
    finally:
        stop_cluster(root, grace_s=3)       # teardown only: SIGKILL what SIGTERM has not ended after 3 s, not 10


def _answers(client: dict[str, str]) -> bool:
    request = urllib.request.Request(client["RAY_API_SERVER_ADDRESS"] + "/api/jobs/",
                                     headers={"Authorization": f"Bearer {client['RAY_AUTH_TOKEN']}"})
    try:
        with urllib.request.urlopen(request, timeout=2):
            return True
    except OSError:
        return False


def test_ray_job_submit_runs_the_pipeline_to_a_complete_manifest_on_s3(ray_head, make_bucket, tmp_path):
    root = make_bucket() + "/pggan"
    s3_env = {k: os.environ[k] for k in S3_KEYS}
    tracking = f"sqlite:///{tmp_path}/mlflow.db"                    # one machine: a local database is shared
    # The README's form of --config: pipelines/configs is a link to pggan/presets, which the working_dir copy keeps.
    cmd = [str(BIN / "ray"), "job", "submit", "--address", ray_head["RAY_API_SERVER_ADDRESS"],
           "--working-dir", ".", "--runtime-env-json", json.dumps({"env_vars": s3_env}), "--",
           "python", "pipelines/full_run.py", "--config", "pipelines/configs/tiny.yaml", "--run-id", "job",
           "--set", f"storage.root={root}", "--set", f"tracking.uri={tracking}"]
    done = subprocess.run(cmd, cwd=REPO, env=ray_head, capture_output=True, text=True, timeout=800)
    assert done.returncode == 0, (done.stdout[-4000:], done.stderr[-2000:])
    assert "succeeded" in (done.stdout + done.stderr).lower()

    run = st.read_json(f"{root}/runs/job/run.json")
    assert run["status"] == "done"
    assert {r: s["status"] for r, s in run["stages"].items()} == {"4": "done", "8": "done"}
    final = run["stages"]["8"]["checkpoint"]
    assert final.startswith(f"{root}/runs/job/stages/r0008/nimg-")
    assert st.exists(f"{final}/state.pt") and st.exists(f"{root}/runs/job/samples/r0008.png")
    assert run["config"]["storage"]["secret_access_key"] in ("", "***")     # never stored in the clear
