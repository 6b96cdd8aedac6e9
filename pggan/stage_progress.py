"""What a stage's worker tells the user: per-tick progress lines, metrics and sample grids from rank 0,
the resume log (one line per (re)start), and the per-rank digests at stage end. No Ray here."""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Protocol

from pggan import storage as st
from pggan.imaging import sample_grid_image, to_uint8
from pggan.labels import per_class_labels
from pggan.sampling import generate, sample_latents, seeded_noise
from pggan.schedule import StagePlan, next_boundary, phase_at
from pggan.stage_log import FanoutLogger, JsonlStageLogger, RunHooks, append_jsonl
from pggan.stage_nets import StageNets

if TYPE_CHECKING:
    from pggan.config import PipelineConfig

BAR_WIDTH = 20


class StageJob(Protocol):
    """What progress reporting needs of a stage (pipelines.train_stage.StageJob provides it)."""
    cfg: PipelineConfig
    res: int
    stage_id: str | None                 # tracking's id of the stage
    hooks: RunHooks | None               # tracking: hooks.stage_logger(res, stage_id) on rank 0

    @property
    def name(self) -> str: ...           # r0032: the prefix of console lines

    @property
    def log_url(self) -> str: ...        # the stage's log folder (metrics.jsonl, resume.jsonl, ranks.json)


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# The tick line's loss terms, by the stats each loss returns (pggan.losses.D_STAT_NAMES); unknown keys skipped.
LOSS_TERMS = (("d_loss", "D", "+.3f"), ("g_loss", "G", "+.3f"), ("wdist", "W", "+.3f"), ("gp", "gp", ".3f"),
              ("r1", "r1", ".3f"), ("real_score", "real", "+.2f"), ("fake_score", "fake", "+.2f"),
              ("d_acc_real", "acc", ".2f"))


def loss_line(m: dict[str, float]) -> str:
    """`D -0.123 G +0.456 W +0.1 gp 0.002` (WGAN-GP) or `D ... G ... r1 ... real ... fake ...` (logistic + R1)."""
    return " ".join(f"{label} {m[k]:{fmt}}" for k, label, fmt in LOSS_TERMS if k in m)


class StageProgress:
    """Tick bookkeeping on every rank (cheap); printing, logging and files on rank 0 only."""

    def __init__(self, job: StageJob, plan: StagePlan, rank: int, world: int, nets: StageNets,
                 started_nimg: int):
        self.job, self.plan, self.rank, self.world, self.nets = job, plan, rank, world, nets
        self.storage = job.cfg.storage
        self.start_nimg = started_nimg
        self.next_tick = next_boundary(job.cfg.schedule, job.res, started_nimg, job.cfg.schedule.tick_kimg)
        self.sums: dict[str, float] = {}
        self.count = 0
        self.tick_nimg = started_nimg
        self.tick_clock = time.monotonic()
        self.paused_s = 0.0
        self.pause_clock: float | None = None
        self.last: dict[str, float] = {}
        self.logger = self._open_logger() if rank == 0 else None
        g, k = job.cfg.eval.grid_size, getattr(nets.G_ema, "num_classes", 0)
        self.grid_labels = per_class_labels(k, g) if k else None      # [K * g]: a conditional grid, a row per class
        self.latents = sample_latents(k * g if k else g * g, job.cfg.model.latent_dim,
                                      job.cfg.eval.seed) if rank == 0 else None

    def _open_logger(self) -> FanoutLogger:
        extra = self.job.hooks.stage_logger(self.job.res, self.job.stage_id) if self.job.hooks else None
        return FanoutLogger(JsonlStageLogger(self.job.log_url, self.storage), extra)

    def _print(self, text: str) -> None:
        print(f"[{self.job.name}] {text}", flush=True)

    # ------------------------------------------------------------------------------------------------------------

    def started(self, how: dict[str, Any], pids: list[int]) -> None:
        """One resume-log line per (re)start of the stage: where it started from and at how many images."""
        if self.rank != 0:
            return
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "nimg": self.start_nimg, "world_size": self.world,
                  "pids": pids, "host": os.uname().nodename, **how}
        append_jsonl(st.join(self.job.log_url, "resume.jsonl"), record, self.storage)
        where = {"checkpoint": f"resumed from {how['from']}", "grown": f"grown from {how['from']}",
                 "fresh": "fresh networks"}[how["source"]]
        self._print(f"start at {self.start_nimg / 1000:.2f}/{self.plan.total_nimg / 1000:.2f} kimg, {where}; "
                    f"{self.world} worker(s), global minibatch {self.plan.batch_size}, lr {self.plan.lr:g}")

    def note(self, text: str) -> None:
        """One line on the console, from rank 0 only (so once per stage start, not once per rank)."""
        if self.rank == 0:
            self._print(text)

    def pause(self) -> None:
        """Checkpoint time is not training time: excluded from img/s."""
        self.pause_clock = time.monotonic()

    def resume(self) -> None:
        if self.pause_clock is not None:
            self.paused_s += time.monotonic() - self.pause_clock
            self.pause_clock = None

    def step(self, stats: dict[str, float], nimg: int, alpha: float) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        if nimg >= self.next_tick or nimg >= self.plan.total_nimg:
            self._tick(nimg, alpha)

    def _tick(self, nimg: int, alpha: float) -> None:
        now = time.monotonic()
        seconds = max(now - self.tick_clock - self.paused_s, 1e-9)
        self.last = {k: v / max(self.count, 1) for k, v in self.sums.items()}
        self.last.update(alpha=alpha, img_per_s=(nimg - self.tick_nimg) / seconds, tick_s=seconds)
        if self.rank == 0:
            self._log_tick(nimg, alpha)
        self.sums, self.count, self.tick_nimg, self.paused_s = {}, 0, nimg, 0.0
        self.tick_clock = time.monotonic()
        self.next_tick = next_boundary(self.job.cfg.schedule, self.job.res, nimg, self.job.cfg.schedule.tick_kimg)

    def _log_tick(self, nimg: int, alpha: float) -> None:
        total, m = self.plan.total_nimg, self.last
        done = min(nimg / max(total, 1), 1.0)
        bar = "#" * int(done * BAR_WIDTH) + "." * (BAR_WIDTH - int(done * BAR_WIDTH))
        eta = (total - nimg) / max(m["img_per_s"], 1e-9)
        phase = phase_at(self.job.cfg.schedule, self.job.res, nimg - 1)
        self._print(f"{phase:9s} [{bar}] {done:4.0%} kimg {nimg / 1000:.2f}/{total / 1000:.2f} alpha {alpha:.2f} | "
                    f"{loss_line(m)} | "
                    f"{m['img_per_s']:.1f} img/s | eta {_duration(eta)}")
        kimg = nimg / 1000
        self.logger.log_metrics({**m, "resolution": self.job.res, "kimg": kimg, "lr": self.plan.lr}, kimg)
        with seeded_noise(self.nets.G_ema, self.job.cfg.eval.seed):    # StyleGAN: the same noise every tick,
            fakes = generate(self.nets.G_ema, self.latents, alpha,      # training's RNG untouched
                             labels=self.grid_labels)                   # [g*g or K*g, 3, R, R]
        self.logger.log_image(sample_grid_image(to_uint8(fakes), cols=self.job.cfg.eval.grid_size), "grids", kimg)

    def finished(self, digests: list[dict[str, Any]]) -> None:
        """Rank 0 records every rank's parameter digest (equal when the ranks stayed in sync)."""
        if self.rank != 0:
            return
        st.write_json_atomic(st.join(self.job.log_url, "ranks.json"), {"ranks": digests}, self.storage)
        in_sync = len({d["params"] for d in digests}) == 1
        self._print(f"done: {self.plan.total_nimg / 1000:.2f} kimg; {len(digests)} rank(s) "
                    + ("in sync" if in_sync else "OUT OF SYNC (parameter digests differ)"))
        self.logger.close()
