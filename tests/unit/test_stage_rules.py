"""The official loop's details around the step, in both loops: mirror augmentation, the Adam reset at the fade
end (once, resume-safe), and minibatch stddev's group (refused at 1 image per worker, a warning when it shrinks)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from pggan import stage_rules
from pggan.config import ConfigError, load_config
from pggan.imaging import to_float
from pggan.progressive import train_progressive
from pggan.schedule import stage_plan, total_nimg
from pggan.stage_nets import build_stage
from pggan.train_step import train_step


def images(n: int, res: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, res, res, 3), dtype=np.uint8))


def test_mirror_flips_each_image_left_right_or_leaves_it_as_it_is():
    reals = to_float(images(256, 8))                                     # [256, 3, 8, 8]
    out = stage_rules.mirror_reals(reals, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, r.flip(-1)) for o, r in zip(out, reals)])
    kept = torch.tensor([torch.equal(o, r) for o, r in zip(out, reals)])
    assert bool((flipped | kept).all())                                  # whole images, never mixed
    assert 96 <= int(flipped.sum()) <= 160                               # about half, drawn per image
    again = stage_rules.mirror_reals(reals, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_the_real_batch_is_mirrored_only_when_data_mirror_is_on():
    batch = images(64, 8)
    plain = stage_rules.real_batch(batch, load_config("tiny.yaml"), "cpu")
    assert torch.equal(plain, to_float(batch)) and plain.device.type == "cpu"
    torch.manual_seed(1)
    mirrored = stage_rules.real_batch(batch, load_config("tiny.yaml", ["data.mirror=true"]), "cpu")
    assert mirrored.shape == (64, 3, 8, 8)
    assert any(not torch.equal(m, p) and torch.equal(m, p.flip(-1)) for m, p in zip(mirrored, plain))


def test_the_celeba_hq_preset_mirrors_like_the_official_run_and_the_default_does_not():
    assert load_config("celeba-hq-1024.yaml").data.mirror is True
    assert load_config("tiny.yaml").data.mirror is False


def test_the_celeba_hq_preset_shows_the_official_12000_kimg():
    assert total_nimg(load_config("celeba-hq-1024.yaml")) == 12_000_000     # train.total_kimg of the v2 presets


def test_the_fade_end_is_the_one_step_that_reaches_the_fade_length():
    steps = [(n, n + 16) for n in range(0, 400, 16)]
    assert [a for a, b in steps if stage_rules.fade_ended(200, a, b)] == [192]    # 192 -> 208 crosses 200
    assert stage_rules.fade_ended(200, 184, 200)                         # landing exactly on it
    assert not stage_rules.fade_ended(200, 200, 216)                     # resumed at the fade end: no second reset
    assert not any(stage_rules.fade_ended(0, a, b) for a, b in steps)   # the first stage has no fade


def test_a_stage_interrupted_anywhere_and_resumed_resets_adam_exactly_once():
    def resets(start: int, stop: int) -> int:                          # the loop's rule over steps of 16 images
        return sum(stage_rules.fade_ended(200, n, n + 16) for n in range(start, stop, 16))
    for cut in range(0, 400, 16):                                        # a checkpoint (and a crash) after `cut`
        assert resets(0, cut) + resets(cut, 400) == 1, cut


def test_reset_optimizers_forgets_adams_moments_and_step_count():
    cfg = load_config("tiny.yaml")
    nets = build_stage(cfg.model, cfg.optim, 4, 1e-3, "cpu", init_seed=0)
    train_step(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, to_float(images(8, 4)), 1.0, cfg)
    assert nets.opt_G.state and nets.opt_D.state
    stage_rules.reset_optimizers(nets.opt_G, nets.opt_D)
    assert not nets.opt_G.state and not nets.opt_D.state
    assert nets.opt_G.param_groups[0]["lr"] == 1e-3
    train_step(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, to_float(images(8, 4)), 1.0, cfg)
    assert all(float(s["step"]) == 1 for s in nets.opt_D.state.values())  # Adam starts over


def adam_steps(opt: torch.optim.Optimizer) -> set[int]:
    return {int(s["step"]) for s in opt.state.values()}


def test_the_ray_free_loop_resets_adam_at_the_fade_end_and_warns_once_per_stage_about_a_small_group():
    # A minibatch of 6 is not a multiple of the group of 4: groups of 3 (warned once per stage, not per step).
    cfg = load_config("tiny.yaml", ["schedule.batch_size={4: 6, 8: 6}", "data.mirror=true",
                                    "schedule.fade_kimg=0.03", "schedule.stabilize_kimg=0.03"])   # 5 + 10 steps
    levels = {4: images(48, 4).numpy(), 8: images(48, 8, seed=1).numpy()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nets = train_progressive(cfg, levels)
    shrunk = [w for w in caught if "minibatch stddev" in str(w.message)]
    assert len(shrunk) == 2 and "groups of 3" in str(shrunk[0].message)
    plan = stage_plan(cfg, 8)
    steps, fade_steps = math.ceil(plan.total_nimg / 6), math.ceil(plan.fade_nimg / 6)
    assert adam_steps(nets.opt_G) == adam_steps(nets.opt_D) == {steps - fade_steps}   # not {steps}


@pytest.mark.parametrize("group, per_rank, expected", [
    (4, 8, None), (4, 4, None), (4, 2, None),                           # as the paper: min(4, N) divides N
    (1, 5, None),                                                        # the layer is off
    (4, 6, "groups of 3"), (4, 5, "same constant feature"),
])
def test_minibatch_stddev_warns_only_when_its_group_shrinks(group, per_rank, expected):
    note = stage_rules.mbstd_note(group, per_rank, 16)
    if expected is None:
        assert note is None
    else:
        assert expected in note and "schedule.batch_size.16" in note and "scaling.num_workers" in note


def test_one_image_per_worker_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"^schedule\.batch_size\.8: gives 1 image per worker .*scaling\.num_workers"):
        load_config("tiny.yaml", ["schedule.batch_size={4: 16, 8: 2}"])             # 2 workers
    with pytest.raises(ConfigError, match=r"schedule\.batch_size\.4: gives 1 image per worker"):
        load_config("tiny.yaml", ["scaling.num_workers=16"])
    assert load_config("tiny.yaml", ["schedule.batch_size={4: 16, 8: 2}", "model.mbstd_group_size=1"])  # layer off
    assert load_config("tiny.yaml", ["schedule.batch_size={4: 16, 8: 4}"])          # 2 per worker is fine
