"""A real S3 server for tests and benchmarks: moto's server as a subprocess on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    """A moto S3 server process; `env` holds the AWS_* variables that point clients at it."""

    endpoint_url: str
    process: subprocess.Popen
    env: dict[str, str] = field(default_factory=dict)

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh unique name by default) and return its s3:// URL."""
        import s3fs

        name = name or f"b-{uuid.uuid4().hex[:12]}"
        fs = s3fs.S3FileSystem(key=self.env["AWS_ACCESS_KEY_ID"], secret=self.env["AWS_SECRET_ACCESS_KEY"],
                               endpoint_url=self.endpoint_url, skip_instance_cache=True)
        fs.mkdir(name)
        return f"s3://{name}"


def start_moto(extra_env: dict[str, str] | None = None) -> S3Server:
    """Start `python -m moto.server` on a free loopback port and wait until it answers."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, **S3_ENV, **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with code {proc.returncode}; is moto[server] installed?")
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return S3Server(endpoint, proc, {**S3_ENV, "AWS_ENDPOINT_URL": endpoint})
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"moto server did not answer on {endpoint} within 30 s")


def stop_moto(server: S3Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
