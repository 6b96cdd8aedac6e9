"""StyleGAN in the stage's training loop: the step with logistic + R1 (its stats, the tracked mean w on G and
G_ema), the tick line for either loss, and a stage resumed mid-fade from its checkpoint ending with the same
weights and w_avg as the uninterrupted stage (the worker's checkpoint and resume path, without Ray)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pggan import stage_rules
from pggan.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint, training_state
from pggan.config import load_config
from pggan.losses import D_STAT_NAMES
from pggan.nn.stylegan import StyleGenerator
from pggan.schedule import alpha_at, stage_plan
from pggan.stage_nets import build_stage, load_stage_state
from pggan.stage_progress import loss_line
from pggan.train_step import train_step

STYLE = ["model.arch=stylegan", "model.mapping_layers=2"]


def config(loss: str = "logistic-r1"):
    return load_config("tiny.yaml", [*STYLE, f"optim.loss={loss}"])


def reals(n: int, res: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("loss", ["logistic-r1", "wgan-gp"])
def test_a_stylegan_step_reports_its_losses_stats_and_moves_w_avg_on_g_and_g_ema(loss):
    cfg = config(loss)
    torch.manual_seed(0)
    nets = build_stage(cfg.model, cfg.optim, 8, 1e-3, "cpu", init_seed=1)
    assert isinstance(nets.G, StyleGenerator) and not nets.G_ema.training
    assert nets.G.w_avg.abs().sum() == 0
    stats = train_step(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, reals(8, 8, 0), 0.5, cfg)
    assert list(stats) == [*D_STAT_NAMES[loss], "g_loss"]
    assert all(np.isfinite(v) for v in stats.values())
    if loss == "logistic-r1":
        assert stats["r1"] > 0
    assert nets.G.w_avg.abs().sum() > 0                                   # tracked over the step's batches
    assert torch.equal(nets.G_ema.w_avg, nets.G.w_avg)                     # the EMA copy carries the same mean w
    line = loss_line(stats)                                                # the stage's tick line
    assert line.startswith("D ") and " G " in line
    assert (" r1 " in line) == (loss == "logistic-r1") and (" gp " in line) == (loss == "wgan-gp")


def run(nets, cfg, plan, nimg: int, until: int) -> int:
    """The worker loop's body (pipelines/train_stage.py): alpha, step, the Adam reset at the fade end."""
    while nimg < until:
        alpha = alpha_at(cfg.schedule, plan.resolution, nimg)
        train_step(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, reals(plan.batch_size, plan.resolution, nimg),
                   alpha, cfg)
        before, nimg = nimg, nimg + plan.batch_size
        if stage_rules.fade_ended(plan.fade_nimg, before, nimg):
            stage_rules.reset_optimizers(nets.opt_G, nets.opt_D)
    return nimg


def checkpoint(nets, cfg, plan, nimg: int, path: str) -> str:
    state = training_state(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, resolution=plan.resolution,
                           stage_nimg=nimg, alpha=alpha_at(cfg.schedule, plan.resolution, nimg),
                           rng=[capture_rng()], config=cfg)
    save_checkpoint(path, state)
    return path


def test_a_stylegan_stage_resumed_mid_fade_ends_with_the_uninterrupted_weights_and_w_avg(tmp_path):
    cfg = load_config("tiny.yaml", [*STYLE, "optim.loss=logistic-r1", "schedule.fade_kimg=0.096",
                                    "schedule.stabilize_kimg=0.032"])     # 6 + 2 steps of 16 at 8x8
    plan = stage_plan(cfg, 8)
    mid = (plan.fade_nimg // 2 // plan.batch_size) * plan.batch_size
    assert 0 < mid < plan.fade_nimg and 0 < alpha_at(cfg.schedule, 8, mid) < 1
    small = build_stage(cfg.model, cfg.optim, 4, plan.lr, "cpu", init_seed=4)
    run(small, cfg, stage_plan(cfg, 4), 0, 32)
    prev = {"G": small.G.state_dict(), "D": small.D.state_dict(), "G_ema": small.G_ema.state_dict()}

    def grown():
        return build_stage(cfg.model, cfg.optim, 8, plan.lr, "cpu", init_seed=8, previous=prev)

    torch.manual_seed(123)
    whole = grown()
    nimg = run(whole, cfg, plan, 0, mid)
    ckpt = checkpoint(whole, cfg, plan, nimg, str(tmp_path / "mid"))         # the mid-fade checkpoint
    run(whole, cfg, plan, nimg, plan.total_nimg)
    final = load_checkpoint(checkpoint(whole, cfg, plan, plan.total_nimg, str(tmp_path / "end")))

    torch.manual_seed(999)                                                  # another process, another RNG
    resumed = build_stage(cfg.model, cfg.optim, 8, plan.lr, "cpu", init_seed=cfg.optim.seed + 8)
    state = load_checkpoint(ckpt)                                           # as train_stage._start
    load_stage_state(resumed, state)
    restore_rng(state["rng"][0])
    assert state["alpha"] == alpha_at(cfg.schedule, 8, mid)
    run(resumed, cfg, plan, state["stage_nimg"], plan.total_nimg)

    for name, net in (("G", resumed.G), ("D", resumed.D), ("G_ema", resumed.G_ema)):
        ours = net.state_dict()
        assert set(ours) == set(final[name])
        for key, value in final[name].items():
            assert torch.equal(ours[key], value), f"{name}.{key} differs after the resume"
    assert final["G"]["w_avg"].abs().sum() > 0
    assert torch.equal(resumed.G_ema.w_avg, final["G_ema"]["w_avg"])
