"""One stage as a Ray Train job with 2 workers: data-parallel training keeps the ranks identical while they see
different data, a stage that already finished is not trained again, and a stage with a fade-in resets Adam at
its end as the official code does."""
from __future__ import annotations

import pytest

from pggan import storage as st
from pggan.checkpoint import load_checkpoint
from pggan.dataset import dataset_url
from pggan.stage_log import read_jsonl
from pipelines.runtime import worker_config
from pipelines.train_stage import StageJob, run_stage
from train_helpers import tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def ddp_stage(tiny_root):
    """One 2-worker stage trained to its end (320 images at 4x4): (job, run_stage's result). Each Train job costs
    half a minute here, so the rerun test reruns this finished stage instead of training one of its own."""
    cfg = worker_config(tiny_config(tiny_root, "schedule.stabilize_kimg=0.32"))
    job = StageJob(cfg, "ddp", 4, dataset_url(cfg), data_digest=True)   # the per-rank data hash is test-only
    return job, run_stage(job)


def test_two_workers_end_with_identical_parameters_after_training_on_different_data(ddp_stage):
    job, out = ddp_stage
    ranks = st.read_json(st.join(job.log_url, "ranks.json"))["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 20                  # 320 images / global minibatch 16
    assert ranks[0]["data"] != ranks[1]["data"]                          # each rank saw its own shard ...
    assert ranks[0]["params"] == ranks[1]["params"]                      # ... yet the weights agree: grads averaged
    assert ranks[0]["pid"] != ranks[1]["pid"]
    state = load_checkpoint(out["checkpoint"])
    assert (state["stage_nimg"], state["alpha"], out["nimg"]) == (320, 1.0, 320)
    assert len(state["rng"]) == 2                                        # each rank's RNG state is kept


def test_rerunning_a_finished_stage_returns_its_checkpoint_without_training(ddp_stage):
    job, first = ddp_stage
    ticks = read_jsonl(st.join(job.log_url, "metrics.jsonl"))
    assert [t["kimg"] for t in ticks] == [0.112, 0.208, 0.304, 0.32]     # every 0.1 kimg, and the stage end
    second = run_stage(job)
    starts = read_jsonl(st.join(job.log_url, "resume.jsonl"))
    assert second["checkpoint"] == first["checkpoint"]
    assert [s["source"] for s in starts] == ["fresh", "checkpoint"]
    assert starts[1]["nimg"] == first["nimg"] == 320
    assert read_jsonl(st.join(job.log_url, "metrics.jsonl")) == ticks     # the second start logged no tick


def test_a_fade_stage_resets_adam_at_the_fade_end_before_that_checkpoint_and_hashes_no_data(tiny_root):
    cfg = worker_config(tiny_config(tiny_root, "scaling.num_workers=1"))   # 8x8: 200 images fade + 200 stabilize
    job = StageJob(cfg, "fade-reset", 8, dataset_url(cfg))
    out = run_stage(job)
    stage = st.join(job.stages_url, job.name)
    at_fade_end = load_checkpoint(st.join(stage, "nimg-0000000208"))      # the first step at or past 200 images
    assert at_fade_end["alpha"] == 1.0
    assert at_fade_end["opt_G"]["state"] == {} and at_fade_end["opt_D"]["state"] == {}   # a resume from it: fresh
    final = load_checkpoint(out["checkpoint"])
    steps_after_fade = (400 - 208) // 16
    for opt in (final["opt_G"], final["opt_D"]):
        assert {int(s["step"]) for s in opt["state"].values()} == {steps_after_fade}     # not 25: reset once
    ranks = st.read_json(st.join(job.log_url, "ranks.json"))["ranks"]
    assert ranks[0]["data"] is None and ranks[0]["steps"] == 25           # no per-step hashing in production
