"""The pure training step: real-image fade-in, EMA, one D+G update, growing a stage, the batch stream."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from pggan.batches import cycle_batches
from pggan.config import load_config
from pggan.nn import downsample2x, upsample2x
from pggan.sampling import sample_latents
from pggan.stage_nets import build_stage, load_stage_state
from pggan.train_step import NonFiniteLossError, blend_reals, ema_update, train_step


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny.yaml")


def reals(n: int, res: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_fade_in_blends_the_reals_from_the_half_resolution_view_to_the_full_one():
    x = reals(4, 8)
    low = upsample2x(downsample2x(x))
    assert torch.equal(blend_reals(x, 0.0), low)
    assert torch.equal(blend_reals(x, 1.0), x)
    assert torch.allclose(blend_reals(x, 0.25), 0.75 * low + 0.25 * x, atol=1e-6)
    assert torch.equal(blend_reals(reals(4, 4), 0.0), reals(4, 4))      # 4x4 has nothing to fade from


def test_ema_moves_each_weight_by_one_minus_beta_towards_the_generator(cfg):
    nets = build_stage(cfg.model, cfg.optim, 4, 1e-3, "cpu", init_seed=0)
    with torch.no_grad():
        for p in nets.G.parameters():
            p.add_(1.0)
    before = [p.clone() for p in nets.G_ema.parameters()]
    ema_update(nets.G_ema, nets.G, beta=0.9)
    for b, e, g in zip(before, nets.G_ema.parameters(), nets.G.parameters()):
        assert torch.allclose(e, 0.9 * b + 0.1 * g, atol=1e-6)


def test_a_step_trains_both_networks_and_reports_finite_losses(cfg):
    torch.manual_seed(0)
    nets = build_stage(cfg.model, cfg.optim, 8, 1e-3, "cpu", init_seed=1)
    g0, d0 = [p.clone() for p in nets.G.parameters()], [p.clone() for p in nets.D.parameters()]
    stats = train_step(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, reals(8, 8), 0.5, cfg)
    assert set(stats) == {"d_loss", "gp", "drift", "wdist", "g_loss"}
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(g0, nets.G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, nets.D.parameters()))
    assert all(p.grad is not None for p in nets.D.parameters())            # D was unfrozen after the G step


def test_a_nan_batch_raises_before_the_discriminator_is_updated(cfg):
    nets = build_stage(cfg.model, cfg.optim, 4, 1e-3, "cpu", init_seed=0)
    d0 = [p.clone() for p in nets.D.parameters()]
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        train_step(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, reals(8, 4) * float("nan"), 1.0, cfg)
    assert all(torch.equal(a, b) for a, b in zip(d0, nets.D.parameters()))


def test_a_grown_stage_keeps_trained_layers_and_starts_its_ema_new_layers_from_g(cfg):
    small = build_stage(cfg.model, cfg.optim, 4, 1e-3, "cpu", init_seed=0)
    train_step(small.G, small.D, small.G_ema, small.opt_G, small.opt_D, reals(8, 4), 1.0, cfg)
    prev = {"G": small.G.state_dict(), "D": small.D.state_dict(), "G_ema": small.G_ema.state_dict()}
    big = build_stage(cfg.model, cfg.optim, 8, 1e-3, "cpu", init_seed=8, previous=prev)
    G, G_ema, D = big.G.state_dict(), big.G_ema.state_dict(), big.D.state_dict()
    assert torch.equal(G["b4.conv.weight"], prev["G"]["b4.conv.weight"])
    assert torch.equal(G_ema["b4.conv.weight"], prev["G_ema"]["b4.conv.weight"])   # EMA grows from the EMA
    assert torch.equal(D["b4.conv.weight"], prev["D"]["b4.conv.weight"])
    assert torch.equal(G_ema["b8.conv0.weight"], G["b8.conv0.weight"])               # new layers: copies of G's
    assert big.opt_G.state_dict()["state"] == {} and big.opt_D.state_dict()["state"] == {}   # fresh optimizers


def test_restoring_a_stage_state_restores_weights_and_optimizer_moments(cfg):
    a = build_stage(cfg.model, cfg.optim, 4, 1e-3, "cpu", init_seed=0)
    train_step(a.G, a.D, a.G_ema, a.opt_G, a.opt_D, reals(8, 4), 1.0, cfg)
    b = build_stage(cfg.model, cfg.optim, 4, 1e-3, "cpu", init_seed=99)
    load_stage_state(b, {"G": a.G.state_dict(), "D": a.D.state_dict(), "G_ema": a.G_ema.state_dict(),
                         "opt_G": a.opt_G.state_dict(), "opt_D": a.opt_D.state_dict()})
    z = sample_latents(4, cfg.model.latent_dim, seed=3)
    assert torch.equal(a.G_ema(z), b.G_ema(z))
    assert torch.equal(a.opt_D.state_dict()["state"][0]["exp_avg"], b.opt_D.state_dict()["state"][0]["exp_avg"])


def test_adam_uses_the_papers_betas(cfg):
    nets = build_stage(cfg.model, dataclasses.replace(cfg.optim, beta1=0, beta2=0.99), 4, 2e-3, "cpu", 0)
    group = nets.opt_G.param_groups[0]
    assert group["betas"] == (0.0, 0.99) and group["lr"] == 2e-3


def batches(n_batches: int, batch: int = 2) -> list[torch.Tensor]:
    return [torch.full((batch, 4, 4, 3), i, dtype=torch.uint8) for i in range(n_batches)]


def test_small_shards_are_replayed_from_memory_after_the_first_epoch():
    restarts = []
    stream = cycle_batches(iter(batches(3)), lambda: restarts.append(1) or iter(batches(3)), 2, cache_bytes=1 << 20)
    seen = [next(stream) for _ in range(9)]
    assert restarts == []                                                   # never re-read
    assert sorted(int(b[0, 0, 0, 0]) for b in seen[:3]) == [0, 1, 2]
    assert sorted(int(x) for b in seen[3:6] for x in b[:, 0, 0, 0]) == [0, 0, 1, 1, 2, 2]   # a full epoch again


def test_large_shards_are_streamed_again_every_epoch():
    restarts = []
    stream = cycle_batches(iter(batches(3)), lambda: restarts.append(1) or iter(batches(3)), 2, cache_bytes=10)
    [next(stream) for _ in range(7)]
    assert len(restarts) == 2


def test_a_shard_smaller_than_one_batch_is_a_clear_error():
    with pytest.raises(RuntimeError, match="smaller than one per-worker batch"):
        next(cycle_batches(iter([]), lambda: iter([]), 2, cache_bytes=1 << 20))

