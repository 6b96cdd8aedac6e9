"""Progressive growing in one process, without Ray: the same networks, step, growth and schedule as the pipeline's
staged Ray Train jobs, on levels held in memory. For measuring learning (benchmarks/quality.py, the learning test),
where a Train job per stage would only add start-up time; the pipeline itself never calls this.

    levels = {4: uint8 [N, 4, 4, 3], 8: ..., 32: ...}
    nets = train_progressive(cfg, levels, on_tick=lambda tick, nets: print(tick))
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from pggan import stage_rules
from pggan.batches import minibatches
from pggan.config import PipelineConfig
from pggan.labels import class_counts, label_distribution
from pggan.schedule import alpha_at, next_boundary, phase_at, stage_plan, stage_resolutions
from pggan.stage_nets import StageNets, build_stage
from pggan.train_step import train_step


@dataclass(frozen=True)
class Tick:
    """Where training stands at a tick: the stage, its images seen, the whole run's, and wall seconds so far."""
    resolution: int
    phase: str                    # "fade" | "stabilize"
    alpha: float
    stage_nimg: int
    total_nimg: int
    seconds: float                # wall time of training since train_progressive started (callbacks excluded)
    losses: dict[str, float] = field(default_factory=dict)
    stage_end: bool = False


# on_tick(tick, nets) -> True to stop training there (e.g. a time budget is spent).
TickCallback = Callable[[Tick, StageNets], "bool | None"]


def train_progressive(cfg: PipelineConfig, levels: Mapping[int, np.ndarray], on_tick: TickCallback | None = None,
                      device: torch.device | str = "cpu", tick_kimg: float | None = None,
                      grow_from: Mapping[str, Any] | None = None,
                      labels: Mapping[int, np.ndarray] | None = None) -> StageNets:
    """Train every stage of `cfg` (schedule.start_resolution .. data.resolution) in this process; returns the last
    stage's networks. `on_tick` runs every `tick_kimg` (default schedule.tick_kimg) and at each stage end; its
    time is not counted in Tick.seconds. Training stops early when it returns True. As the Ray stage: reals
    mirrored when data.mirror is on, both Adam states reset at each fade end (pggan.stage_rules).
    `grow_from` (a checkpoint's state: its "resolution", "G", "D", "G_ema") starts from a trained smaller stage
    instead: only the stages above its resolution train, the first of them grown from it (with its fade-in).
    `labels` ({res: int64 [N]}, each level's `label` column, classes 0..K-1) trains a conditional run (AC-GAN),
    the fakes' classes drawn from the label frequencies."""
    tick_kimg = cfg.schedule.tick_kimg if tick_kimg is None else tick_kimg
    nets, total, seconds = None, 0, 0.0
    previous = None if grow_from is None else {k: grow_from[k] for k in ("G", "D", "G_ema")}
    for res in stage_resolutions(cfg):
        if grow_from is not None and res <= grow_from["resolution"]:
            continue
        plan = stage_plan(cfg, res)
        if nets is not None:
            previous = {"G": nets.G.state_dict(), "D": nets.D.state_dict(), "G_ema": nets.G_ema.state_dict()}
        k, probs = _classes(labels, res, device)
        nets = build_stage(cfg.model, cfg.optim, res, plan.lr, device, cfg.optim.seed + res, previous, num_classes=k)
        torch.manual_seed(cfg.optim.seed * 1_000_003 + res * 10_007)
        batches = minibatches(levels[res], plan.batch_size, cfg.optim.seed + res,
                              None if labels is None else labels[res])
        note = stage_rules.mbstd_note(cfg.model.mbstd_group_size, plan.batch_size, res)
        if note:
            warnings.warn(note, stacklevel=2)
        nimg, next_tick, stats = 0, next_boundary(cfg.schedule, res, 0, tick_kimg), {}
        started = time.perf_counter()
        while nimg < plan.total_nimg:
            alpha = alpha_at(cfg.schedule, res, nimg)
            images, *classes = (lambda b: b if isinstance(b, tuple) else (b,))(next(batches))
            reals = stage_rules.real_batch(images, cfg, device)           # [n, 3, R, R] in [-1, 1]
            stats = train_step(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, reals, alpha, cfg,
                               real_labels=classes[0].to(device) if classes else None, label_probs=probs)
            nimg += plan.batch_size
            if stage_rules.fade_ended(plan.fade_nimg, nimg - plan.batch_size, nimg):
                stage_rules.reset_optimizers(nets.opt_G, nets.opt_D)
            if nimg >= next_tick or nimg >= plan.total_nimg:
                seconds += time.perf_counter() - started
                tick = Tick(res, phase_at(cfg.schedule, res, nimg - 1), alpha_at(cfg.schedule, res, nimg), nimg,
                            total + nimg, round(seconds, 3), dict(stats), stage_end=nimg >= plan.total_nimg)
                if on_tick is not None and on_tick(tick, nets):
                    return nets
                next_tick = next_boundary(cfg.schedule, res, nimg, tick_kimg)
                started = time.perf_counter()
        total += nimg
    if nets is None:
        raise ValueError(f"nothing to train: grow_from is at {grow_from and grow_from['resolution']}, "
                         f"data.resolution is {cfg.data.resolution}")
    return nets


def _classes(labels: Mapping[int, np.ndarray] | None, res: int, device: torch.device | str
             ) -> tuple[int, torch.Tensor | None]:
    """(number of classes, their frequencies [K] on `device`) of level `res`'s labels; (0, None) without."""
    if labels is None:
        return 0, None
    column = np.asarray(labels[res])
    k = int(column.max()) + 1 if column.size else 0
    return k, label_distribution(class_counts(column, k)).to(device)
