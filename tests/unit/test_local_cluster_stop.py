"""Stopping the local cluster's processes: each one signalled once, those gone already skipped, the rest reported."""
from __future__ import annotations

import subprocess
import sys

import psutil

from cluster.local.localcluster import signal_and_wait


def sleeper() -> psutil.Process:
    return psutil.Process(subprocess.Popen(["sleep", "60"]).pid)


def test_signal_and_wait_ends_live_processes_and_skips_ones_already_gone():
    gone = sleeper()
    gone.kill()
    gone.wait(timeout=10)                                           # reaped: signalling it raises NoSuchProcess
    polite, forced = sleeper(), sleeper()
    assert signal_and_wait([gone, polite], timeout_s=10, kill=False) == []       # SIGTERM
    assert signal_and_wait([forced], timeout_s=10) == []                          # SIGKILL
    assert not polite.is_running() and not forced.is_running()


def test_signal_and_wait_returns_the_processes_that_outlive_the_wait():
    ignores_term = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); "
                    "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", ignores_term], stdout=subprocess.PIPE)
    proc.stdout.readline()                                          # SIGTERM is ignored from here on
    stubborn = psutil.Process(proc.pid)
    try:
        assert signal_and_wait([stubborn], timeout_s=0.5, kill=False) == [stubborn]
    finally:
        proc.stdout.close()
        assert signal_and_wait([stubborn], timeout_s=10) == []
