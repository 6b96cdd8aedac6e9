"""Schedule: stages, alpha and per-resolution settings as pure functions of images seen, pinned at the edges."""
import dataclasses

import pytest

from pggan.config import ConfigError, load_config
from pggan.nn.networks import block_resolutions, check_resolution
from pggan.resolutions import is_resolution, resolutions
from pggan.schedule import (alpha_at, batch_size_at, fade_nimg, lr_at, next_boundary, phase_at, stage_nimg,
                            stage_plan, stage_resolutions, stabilize_nimg, total_nimg)


@pytest.fixture
def paper():
    return load_config("celeba-hq-1024.yaml")


def test_stages_run_from_4_to_the_target(paper):
    assert stage_resolutions(paper) == [4, 8, 16, 32, 64, 128, 256, 512, 1024]


def test_stages_start_at_start_resolution(paper):
    cfg = paper.replace(schedule=dataclasses.replace(paper.schedule, start_resolution=32))
    assert stage_resolutions(cfg) == [32, 64, 128, 256, 512, 1024]


def test_one_rule_for_resolutions_serves_stages_network_blocks_and_config_checks(paper):
    assert resolutions(32) == [4, 8, 16, 32] and resolutions(32, 8) == [8, 16, 32] and resolutions(2) == []
    assert block_resolutions(64) == resolutions(64) == stage_resolutions(paper)[:5]
    assert [n for n in range(0, 70) if is_resolution(n)] == [4, 8, 16, 32, 64]
    assert not is_resolution(True) and not is_resolution(8.0)
    with pytest.raises(ValueError, match="power of two >= 4"):
        check_resolution(12)
    with pytest.raises(ConfigError, match="data.resolution: must be a power of two"):
        load_config("tiny.yaml", ["data.resolution=24"])


def test_first_stage_has_no_fade_in_and_alpha_is_one(paper):
    s = paper.schedule
    assert fade_nimg(s, 4) == 0 and stabilize_nimg(s, 4) == 600_000
    assert alpha_at(s, 4, 0) == 1.0 and phase_at(s, 4, 0) == "stabilize"


def test_alpha_rises_linearly_over_the_fade_in_then_stays_at_one(paper):
    s = paper.schedule
    assert alpha_at(s, 8, 0) == 0.0
    assert alpha_at(s, 8, 150_000) == pytest.approx(0.25)
    assert alpha_at(s, 8, 599_999) < 1.0 and phase_at(s, 8, 599_999) == "fade"
    assert alpha_at(s, 8, 600_000) == 1.0 and phase_at(s, 8, 600_000) == "stabilize"
    assert alpha_at(s, 8, 1_199_999) == 1.0
    assert stage_nimg(s, 8) == 1_200_000


def test_per_resolution_lengths_override_the_global_ones():
    cfg = load_config(None, ["schedule.fade_kimg=3", "schedule.stabilize_kimg=3",
                             "schedule.fade_kimg_per_res={16: 1}", "schedule.stabilize_kimg_per_res={32: 0.5}"])
    s = cfg.schedule
    assert fade_nimg(s, 16) == 1000 and fade_nimg(s, 8) == 3000
    assert stabilize_nimg(s, 32) == 500 and stabilize_nimg(s, 16) == 3000


def test_batch_and_learning_rate_follow_the_resolution(paper):
    s, o = paper.schedule, paper.optim
    assert batch_size_at(s, 4) == 512 and batch_size_at(s, 1024) == 32
    assert lr_at(s, o, 64) == 0.001 and lr_at(s, o, 1024) == 0.003
    plan = stage_plan(paper, 256)
    assert (plan.batch_size, plan.lr, plan.total_nimg) == (32, 0.002, 1_200_000)


def test_checkpoint_boundaries_land_on_multiples_and_the_stage_end():
    cfg = load_config("tiny.yaml")
    s = cfg.schedule  # 8x8: 200 fade + 200 stabilize, ckpt every 100
    assert next_boundary(s, 8, 0, 0.1) == 100
    assert next_boundary(s, 8, 100, 0.1) == 200
    assert next_boundary(s, 8, 350, 0.1) == 400
    assert next_boundary(s, 8, 400, 0.1) == 400


def test_total_images_sum_the_stages():
    cfg = load_config("tiny.yaml")
    assert total_nimg(cfg) == 200 + 400
