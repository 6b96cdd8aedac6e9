"""The direct baseline (schedule.start_resolution = data.resolution): the same networks and loss trained at the
target resolution from scratch, with no growing and no fade-in; the comparison progressive growing is measured by."""
from __future__ import annotations

import numpy as np
import torch

from pggan.config import load_config
from pggan.imaging import box_pyramid
from pggan.progressive import train_progressive
from pggan.schedule import stage_resolutions
from pggan.stage_nets import build_stage
from pggan.synthetic import image_rng, synthetic_image

OVERRIDES = ["data.synthetic_count=32", "schedule.fade_kimg=0.032", "schedule.stabilize_kimg=0.032"]


def levels(count: int, res: int) -> dict[int, np.ndarray]:
    pyramids = [box_pyramid(synthetic_image(image_rng(0, i), res)) for i in range(count)]
    return {r: np.stack([p[r] for p in pyramids]) for r in pyramids[0]}


def test_direct_training_starts_at_the_target_with_every_layer_fresh_and_never_fades():
    cfg = load_config("tiny.yaml", [*OVERRIDES, "schedule.start_resolution=8"])
    assert stage_resolutions(cfg) == [8]
    ticks = []
    nets = train_progressive(cfg, levels(32, 8), on_tick=lambda tick, _: ticks.append(tick), tick_kimg=0.016)
    assert ticks and {(t.resolution, t.phase, t.alpha) for t in ticks} == {(8, "stabilize", 1.0)}
    assert nets.G.resolution == 8 and nets.D.resolution == 8
    # All of G's and D's layers, the 4x4 block included, start from the fresh init and are trained; only the
    # half-resolution RGB layers that a fade-in would use stay untouched (alpha is 1 throughout).
    fresh = build_stage(cfg.model, cfg.optim, 8, cfg.optim.lr, "cpu", cfg.optim.seed + 8)
    for trained, init in ((nets.G, fresh.G), (nets.D, fresh.D)):
        fade_only = tuple(f"{key}." for key in trained.fade_in_layer_names())
        for (name, p), (_, p0) in zip(trained.named_parameters(), init.named_parameters()):
            assert torch.equal(p, p0) == name.startswith(fade_only), f"{type(trained).__name__}.{name}"


def test_direct_and_progressive_end_with_the_same_networks():
    data = levels(32, 8)
    direct = train_progressive(load_config("tiny.yaml", [*OVERRIDES, "schedule.start_resolution=8"]), data)
    grown = train_progressive(load_config("tiny.yaml", OVERRIDES), data)
    for a, b in ((direct.G, grown.G), (direct.D, grown.D)):
        assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_growing_from_a_trained_stage_trains_only_the_stages_above_it_with_their_fade_in():
    import numpy as np

    from pggan.config import load_config
    from pggan.progressive import train_progressive

    rng = np.random.default_rng(0)
    levels = {r: rng.integers(0, 256, (64, r, r, 3), dtype=np.uint8) for r in (4, 8)}
    small = train_progressive(load_config("tiny.yaml", ["data.resolution=4"]), levels)
    state = {"resolution": 4, "G": small.G.state_dict(), "D": small.D.state_dict(),
             "G_ema": small.G_ema.state_dict()}
    ticks = []
    grown = train_progressive(load_config("tiny.yaml", ["data.resolution=8"]), levels,
                              on_tick=lambda t, n: ticks.append(t), grow_from=state)
    assert {t.resolution for t in ticks} == {8} and ticks[0].phase == "fade" and ticks[-1].stage_end
    assert grown.G.resolution == 8
