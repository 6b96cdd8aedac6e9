"""Two runs started on one machine at the same moment race for the Ray dashboard's port: the loser must start on
another port instead of failing the run (seen when a second run started while the first one's Ray was starting)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SCRIPT = textwrap.dedent("""
    import socket
    import ray
    from pipelines import runtime

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    real_free_port, calls = runtime._free_port, []

    def racing_free_port(preferred):      # the first check sees the port free; then another Ray takes it
        calls.append(preferred)
        return port if len(calls) == 1 else real_free_port(preferred)

    runtime._free_port = racing_free_port
    url = runtime.start_private_ray(num_cpus=1)
    print("URL", url, "TAKEN", port, "ATTEMPTS", len(calls))
    print("TASK", ray.get(ray.remote(lambda: 6 * 7).remote()))
    ray.shutdown()
""")


def test_a_dashboard_port_taken_during_start_is_retried_on_another(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=240, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    words = out.stdout.split()
    url, taken, attempts = words[words.index("URL") + 1], words[words.index("TAKEN") + 1], words[words.index("ATTEMPTS") + 1]
    assert not url.endswith(f":{taken}") and int(attempts) == 2, out.stdout
    assert "TASK 42" in out.stdout, "the Ray started on the second attempt must run tasks"
