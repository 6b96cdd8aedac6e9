"""The growth schedule as pure functions of images seen: stages, fade-in alpha, minibatch and learning rate."""
from __future__ import annotations

from dataclasses import dataclass

from pggan.config import OptimConfig, PipelineConfig, ScheduleConfig
from pggan.resolutions import resolutions


def stage_resolutions(cfg: PipelineConfig) -> list[int]:
    """Resolutions trained in order: start_resolution, 2x, ... data.resolution."""
    return resolutions(cfg.data.resolution, cfg.schedule.start_resolution)


def fade_nimg(sched: ScheduleConfig, res: int) -> int:
    """Images of fade-in at `res`; the first stage has none (there is nothing to fade from)."""
    if res <= sched.start_resolution:
        return 0
    return int(round(sched.fade_kimg_per_res.get(res, sched.fade_kimg) * 1000))


def stabilize_nimg(sched: ScheduleConfig, res: int) -> int:
    """Images of stabilization (alpha = 1) at `res`."""
    return int(round(sched.stabilize_kimg_per_res.get(res, sched.stabilize_kimg) * 1000))


def stage_nimg(sched: ScheduleConfig, res: int) -> int:
    """Total images shown in the stage at `res` (fade-in + stabilize)."""
    return fade_nimg(sched, res) + stabilize_nimg(sched, res)


def alpha_at(sched: ScheduleConfig, res: int, nimg: int) -> float:
    """Fade-in weight of the new layers after `nimg` images of the stage: linear 0 -> 1, then 1."""
    fade = fade_nimg(sched, res)
    if fade <= 0:
        return 1.0
    return min(max(nimg / fade, 0.0), 1.0)


def phase_at(sched: ScheduleConfig, res: int, nimg: int) -> str:
    """'fade' while alpha < 1, else 'stabilize'."""
    return "fade" if nimg < fade_nimg(sched, res) else "stabilize"


def batch_size_at(sched: ScheduleConfig, res: int) -> int:
    """Global minibatch at `res` (split evenly across workers)."""
    if res not in sched.batch_size:
        raise KeyError(f"schedule.batch_size has no entry for resolution {res}")
    return sched.batch_size[res]


def lr_at(sched: ScheduleConfig, optim: OptimConfig, res: int) -> float:
    """Learning rate at `res`: the per-resolution override, else optim.lr."""
    return sched.lr_per_res.get(res, optim.lr)


def next_boundary(sched: ScheduleConfig, res: int, nimg: int, every_kimg: float) -> int:
    """The next multiple of `every_kimg` (in images) strictly after `nimg`, capped at the stage end."""
    every = max(int(round(every_kimg * 1000)), 1)
    return min((nimg // every + 1) * every, stage_nimg(sched, res))


@dataclass(frozen=True)
class StagePlan:
    """What one stage does, derived from the config (plain values, cheap to pass to workers)."""
    resolution: int
    fade_nimg: int
    stabilize_nimg: int
    batch_size: int
    lr: float

    @property
    def total_nimg(self) -> int:
        return self.fade_nimg + self.stabilize_nimg


def stage_plan(cfg: PipelineConfig, res: int) -> StagePlan:
    s = cfg.schedule
    return StagePlan(res, fade_nimg(s, res), stabilize_nimg(s, res), batch_size_at(s, res), lr_at(s, cfg.optim, res))


def total_nimg(cfg: PipelineConfig) -> int:
    """Images shown over the whole run."""
    return sum(stage_nimg(cfg.schedule, r) for r in stage_resolutions(cfg))
