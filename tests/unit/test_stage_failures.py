"""The stage driver's pure parts: the one-line failure reason and the documented fault-injection variable."""
from __future__ import annotations

import pytest

from pggan.train_step import NonFiniteLossError
from pipelines.train_stage import FAULT_ENV, failure_reason, fault_from_env


class WorkerGroupError(RuntimeError):
    """Shaped like ray.train.WorkerGroupError: a long message and the per-rank errors."""

    def __init__(self, failures):
        super().__init__("Training failed due to worker errors:\n[Rank 0]\nTraceback ...")
        self.worker_failures = failures


def test_a_failed_stage_is_explained_by_its_root_cause_in_one_line():
    nan = NonFiniteLossError("non-finite loss in the Discriminator update at 8x8")
    assert failure_reason(WorkerGroupError({0: nan})) == ("NonFiniteLossError: non-finite loss in the "
                                                          "Discriminator update at 8x8")
    traceback = "Traceback (most recent call last):\n  File x\nray.exceptions.ActorDiedError: The actor died"
    assert failure_reason(RuntimeError(traceback)) == "ActorDiedError: The actor died"


def test_the_nan_fault_targets_one_stage_or_every_stage():
    assert fault_from_env(8, {FAULT_ENV: "8:300"}) == 300
    assert fault_from_env(4, {FAULT_ENV: "8:300"}) is None
    assert fault_from_env(4, {FAULT_ENV: "120"}) == 120
    assert fault_from_env(4, {}) is None
    with pytest.raises(ValueError, match=FAULT_ENV):
        fault_from_env(4, {FAULT_ENV: "soon"})
