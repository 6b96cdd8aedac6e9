"""Training learns: a short progressive run (4x4 -> 8x8, fade-in included) on the built-in synthetic shapes must
bring the generator's SWD ratio (the honest evaluation: fake SWD over the data set's real-vs-real SWD, same seed)
far below the untrained generator's, and under a fixed ceiling. A step that stops learning fails it: checked by
hand with G's learning rate forced to 0 and with the gradient penalty's sign flipped (figures at CEILING)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pggan import evaluation as ev
from pggan.config import load_config
from pggan.imaging import box_pyramid
from pggan.progressive import train_progressive
from pggan.stage_nets import build_stage
from pggan.synthetic import image_rng, synthetic_image

RES = 8
NUM_IMAGES = 1024                # the data set; the evaluation compares 256 fakes with 256 random reals
EVAL_IMAGES = 256
SEED = 0
# The demo's network and optimizer (latent 32, 32 feature maps, minibatch 16, lr 0.002, EMA 0.99), on a schedule
# just long enough to get past the dip that every fade-in causes.
SETTINGS = ["data.resolution=8", "model.latent_dim=32", "model.fmap_base=512", "model.fmap_max=32",
            "schedule.batch_size={4: 16, 8: 16}", "schedule.stabilize_kimg_per_res={4: 8, 8: 8}",
            "schedule.fade_kimg_per_res={8: 8}", "optim.lr=0.002", "optim.ema_beta=0.99", "scaling.num_workers=1"]
# Measured with these settings (1 thread, 2-core box under load; 18 kimg in ~45-60 s of CPU, this test 59 s of CPU):
# untrained -> trained ratio 3.32 -> 1.76 (optim.seed 0), 4.34 -> 1.62 (seed 1), 3.05 -> 1.42 (seed 2). This test
# with the step sabotaged (seed 0) fails: G's lr forced to 0 -> 2.96 (0.89 of untrained), gradient penalty's sign
# flipped -> 2.25-2.32 (0.68-0.70). Both bounds sit between.
CEILING = 2.0
MAX_FRACTION = 0.62              # of the untrained generator's ratio


@pytest.fixture
def one_thread():
    """One intra-op thread, as measured: on tensors this small a second thread gains little on an idle machine and
    spins when the machine is busy (2 threads took 3x the CPU time under load), and results then match the figures."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def synthetic_levels(count: int, res: int) -> dict[int, np.ndarray]:
    """The demo data set at `res`, with its lower levels box-filtered as ingest makes them: {4: uint8 [N, 4, 4, 3], ...}."""
    pyramids = [box_pyramid(synthetic_image(image_rng(0, i), res)) for i in range(count)]
    return {r: np.stack([p[r] for p in pyramids]) for r in pyramids[0]}


def test_a_short_progressive_run_brings_the_swd_ratio_far_below_the_untrained_generators(one_thread):
    cfg = load_config("tiny.yaml", SETTINGS)
    levels = synthetic_levels(NUM_IMAGES, RES)
    level = ev.memory_level(levels[RES])
    reference = ev.compute_reference(level, ev.usable_size(level, EVAL_IMAGES), SEED)
    untrained = build_stage(cfg.model, cfg.optim, RES, cfg.optim.lr, "cpu", cfg.optim.seed + RES).G_ema
    before = ev.evaluate_generator(untrained, level, EVAL_IMAGES, SEED, reference)

    nets = train_progressive(cfg, levels)
    after = ev.evaluate_generator(nets.G_ema, level, EVAL_IMAGES, SEED, reference)

    figures = f"SWD ratio untrained {before['swd_ratio']:.3f}, trained {after['swd_ratio']:.3f}"
    assert after["swd_ratio"] < CEILING, figures
    assert after["swd_ratio"] < MAX_FRACTION * before["swd_ratio"], figures
