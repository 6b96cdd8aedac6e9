"""One stage of progressive growing (one resolution) as one Ray Train job: N data-parallel workers read that
level's Parquet data set, fade in (alpha 0 -> 1 over the fade images) then stabilize, checkpoint every
schedule.ckpt_kimg, and restart from the newest checkpoint on failure (FailureConfig).

    python pipelines/train_stage.py --run-id ID --res 8 [--seed-checkpoint URL] [--config FILE] [--set k=v ...]

Where things go (all under {root}/runs/{run_id}/): stages/r{res:04d}/nimg-*/ the Ray Train checkpoints
(pggan.checkpoint format); logs/r{res:04d}/ metrics.jsonl, grids/, resume.jsonl (one line per (re)start:
the images seen it resumed from, each rank's pid and Ray node id) and ranks.json (per-rank node id and
parameter digests at stage end).
Devices: each worker trains on ray.train.torch.get_device() (its GPU under scaling.use_gpu); Ray Data's prefetch
thread pins each minibatch and copies it there, so the step loop makes no host copy. Small levels are then replayed
from a cache on that device (CACHE_BYTES). At the end of the fade-in both Adam states are reset, as the official
code does (pggan.stage_rules).
Fault injection for tests: PGGAN_FAULT_NAN_AT_NIMG=[RES:]NIMG makes rank 0's real images NaN from that many
images into the stage (of stage RES only, if given), i.e. a non-finite loss on every later step.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pggan import checkpoint as ckpt_io  # noqa: E402
from pggan import stage_rules  # noqa: E402
from pggan import storage as st  # noqa: E402
from pggan.batches import cycle_batches  # noqa: E402
from pggan.config import PipelineConfig  # noqa: E402
from pggan.dataset import level_url  # noqa: E402
from pggan.labels import label_distribution  # noqa: E402
from pggan.distributed import broadcast_parameters, param_digest, world_size  # noqa: E402
from pggan.schedule import StagePlan, alpha_at, next_boundary, stage_plan  # noqa: E402
from pggan.stage_log import RunHooks, stage_log_url  # noqa: E402
from pggan.stage_nets import StageNets, build_stage, load_stage_state  # noqa: E402
from pggan.stage_progress import StageProgress  # noqa: E402
from pggan.train_step import NonFiniteLossError, train_step  # noqa: E402

FAULT_ENV = "PGGAN_FAULT_NAN_AT_NIMG"
# A rank's share of a level up to this size is kept after its first epoch, on the rank's training device (GPU
# memory under scaling.use_gpu, else host memory): at most 512 MiB held per worker, twice that for the moment the
# epoch's batches are joined into one pool. Larger shares are streamed again every epoch.
CACHE_BYTES = 512 << 20


class StageFailedError(RuntimeError):
    """A stage ran out of retries; the message is one line with the root cause."""


@dataclass(frozen=True)
class StageJob:
    """Everything one stage's workers need, as plain values (pickled to every worker)."""
    cfg: PipelineConfig                  # worker_config(): absolute root, resolved S3 settings (repr hides keys)
    run_id: str
    res: int
    dataset_url: str
    seed_checkpoint: str | None = None   # the previous stage's final checkpoint URL (None for the first stage)
    hooks: RunHooks | None = None        # tracking: hooks.stage_logger(res, stage_id) on rank 0
    stage_id: str | None = None
    fault_nan_at: int | None = None      # see FAULT_ENV
    data_digest: bool = False            # tests: sha256 of every batch a rank trained on, in ranks.json "data"
                                         # (a host copy and a hash per step: never in production)
    class_names: tuple[str, ...] = ()    # a conditional run's classes in index order (run.json "classes")
    class_counts: tuple[int, ...] = ()   # images per class: the distribution the fakes' labels are drawn from

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def name(self) -> str:
        return f"r{self.res:04d}"

    @property
    def stages_url(self) -> str:
        return st.join(self.cfg.storage.root, "runs", self.run_id, "stages")

    @property
    def log_url(self) -> str:
        return stage_log_url(self.cfg.storage.root, self.run_id, self.res)


def fault_from_env(res: int, environ: dict[str, str] | None = None) -> int | None:
    """PGGAN_FAULT_NAN_AT_NIMG as the images-seen threshold for stage `res`, or None."""
    text = (environ if environ is not None else os.environ).get(FAULT_ENV, "").strip()
    m = re.fullmatch(r"(?:(\d+):)?(\d+)", text)
    if not text:
        return None
    if not m:
        raise ValueError(f"{FAULT_ENV}={text!r}: expected NIMG or RES:NIMG, e.g. 8:300")
    return int(m.group(2)) if m.group(1) is None or int(m.group(1)) == res else None


# ----------------------------------------------------------------------------------------------------------------
# The worker loop.

def _gather(obj: Any) -> list[Any]:
    """obj from every rank, in rank order (a collective: every rank calls it)."""
    if world_size() <= 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def _seed_rngs(cfg: PipelineConfig, res: int, rank: int, nimg: int) -> None:
    """Distinct, reproducible RNG streams per (seed, stage, rank, start point): ranks draw different latents."""
    seed = (cfg.optim.seed * 1_000_003 + res * 10_007 + rank * 101 + nimg) % 2**31
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _checkpoint_url(job: StageJob, path: str) -> str:
    """A Ray checkpoint's path (inside the storage filesystem) as a URL."""
    protocol, _ = st.split_url(job.stages_url)
    return st.to_url(f"{protocol}://{path}" if protocol != "file" else path)


def _resume_state(job: StageJob, rank: int) -> tuple[dict, str] | None:
    """(state, URL) of the newest checkpoint of this stage, or None. Rank 0 picks it: Ray's latest registered
    one, or a newer complete one on storage (written just before a crash, before Ray registered it); every rank
    then loads that same one."""
    import ray.train

    state, url = None, None
    if rank == 0:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None:
            url = _checkpoint_url(job, checkpoint.path)
            state = ckpt_io.load_checkpoint(url, job.cfg.storage)
        newer = ckpt_io.load_newest(st.join(job.stages_url, job.name), job.cfg.storage,
                                    after=state["stage_nimg"] if state else -1)
        if newer is not None:
            url, state = newer
    url = _gather(url)[0]
    if url is None:
        return None
    return (state if rank == 0 else ckpt_io.load_checkpoint(url, job.cfg.storage)), url


def _start(job: StageJob, plan: StagePlan, rank: int, device: torch.device) -> tuple[StageNets, int, dict]:
    """(nets, images seen, how) from the newest checkpoint of this stage, else grown from the seed, else fresh."""
    cfg, res = job.cfg, job.res
    nets = build_stage(cfg.model, cfg.optim, res, plan.lr, device, init_seed=cfg.optim.seed + res,
                       num_classes=job.num_classes)
    resumed = _resume_state(job, rank)
    if resumed is not None:
        state, where = resumed
        load_stage_state(nets, state)
        nimg = state["stage_nimg"]
        if len(state["rng"]) == world_size():
            ckpt_io.restore_rng(state["rng"][rank])
        else:
            _seed_rngs(cfg, res, rank, nimg)
        return nets, nimg, {"source": "checkpoint", "from": where, "alpha": state["alpha"]}
    if job.seed_checkpoint:
        prev = ckpt_io.load_checkpoint(job.seed_checkpoint, cfg.storage)
        if prev["resolution"] != res // 2:
            raise ValueError(f"seed checkpoint {job.seed_checkpoint} is at {prev['resolution']}x"
                             f"{prev['resolution']}; stage {res}x{res} grows from {res // 2}x{res // 2}")
        nets = build_stage(cfg.model, cfg.optim, res, plan.lr, device, cfg.optim.seed + res, prev,
                           num_classes=job.num_classes)
        source = {"source": "grown", "from": job.seed_checkpoint}
    else:
        source = {"source": "fresh", "from": None}
    _seed_rngs(cfg, res, rank, 0)
    broadcast_parameters(nets.G, nets.D, nets.G_ema)
    return nets, 0, source


def _report(job: StageJob, nets: StageNets, nimg: int, rank: int, metrics: dict[str, float]) -> None:
    """Checkpoint (rank 0 writes it) and report: a barrier every rank passes."""
    import ray.train

    rngs = _gather(ckpt_io.capture_rng())
    name = ckpt_io.dir_name(nimg)
    alpha = alpha_at(job.cfg.schedule, job.res, nimg)
    if rank != 0:
        ray.train.report(metrics, checkpoint=None, checkpoint_dir_name=name)
        return
    state = ckpt_io.training_state(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, resolution=job.res,
                                   stage_nimg=nimg, alpha=alpha, rng=rngs, config=job.cfg,
                                   class_names=job.class_names)
    with tempfile.TemporaryDirectory(prefix="pggan-ckpt-") as tmp:
        ckpt_io.save_checkpoint(tmp, state)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_dir_name=name)


def _next_checkpoint(plan: StagePlan, job: StageJob, nimg: int) -> int:
    """The next images-seen count to checkpoint at: every ckpt_kimg, the end of the fade, the stage end."""
    boundary = next_boundary(job.cfg.schedule, job.res, nimg, job.cfg.schedule.ckpt_kimg)
    return min(boundary, plan.fade_nimg) if nimg < plan.fade_nimg else boundary


def _batches(plan: StagePlan, world: int, device: torch.device, conditional: bool):
    """Endless per-rank minibatches (uint8 [n, R, R, 3], labels int64 [n] or None) on `device` from this worker's
    shard (see pggan.batches.cycle_batches). Ray Data's prefetch thread does the copy to a GPU, from pinned
    memory. Each image's label comes in the same row, so shards, shuffles and the cache keep the pairs."""
    import ray.train

    shard = ray.train.get_dataset_shard("train")
    per_rank = plan.batch_size // world

    def epoch():
        for batch in shard.iter_torch_batches(batch_size=per_rank, drop_last=True, prefetch_batches=2,
                                              local_shuffle_buffer_size=max(4 * per_rank, 64),
                                              device=device, pin_memory=device.type == "cuda"):
            yield (batch["image"], batch["label"]) if conditional else (batch["image"],)

    return cycle_batches(epoch(), epoch, per_rank, CACHE_BYTES)


def _quiet_report_lines() -> None:
    """Ray Train 2.60 logs every report, metrics dict and all, as an INFO line on the driver's console from every
    rank: its logger is named by file path, so RunConfig's LoggingConfig (which filters "ray.train.*") misses it.
    The stage prints its own progress line per tick instead."""
    try:
        from ray.train.v2._internal.execution import context as train_context
    except ImportError:                                          # another Ray layout: leave its logging alone
        return
    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: resume or start the stage, train to its end, checkpoint along the way."""
    import ray
    import ray.train
    import ray.train.torch

    job: StageJob = config["job"]
    _quiet_report_lines()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    plan = stage_plan(job.cfg, job.res)
    nets, nimg, how = _start(job, plan, rank, device)
    progress = StageProgress(job, plan, rank, world, nets, started_nimg=nimg)
    node = ray.get_runtime_context().get_node_id()               # which machine each rank ran on, for the logs
    how.update(nodes=_gather(node), threads=torch.get_num_threads())
    progress.started(how, pids=_gather(os.getpid()))
    note = stage_rules.mbstd_note(job.cfg.model.mbstd_group_size, plan.batch_size // world, job.res)
    if note:
        progress.note(f"warning: {note}")
    data_digest, steps = (hashlib.sha256() if job.data_digest else None), 0
    next_ckpt, batches = _next_checkpoint(plan, job, nimg), _batches(plan, world, device, job.num_classes > 0)
    probs = label_distribution(job.class_counts).to(device) if job.num_classes else None  # [K] fakes' labels
    while nimg < plan.total_nimg:
        alpha = alpha_at(job.cfg.schedule, job.res, nimg)
        images, *labels = next(batches)                          # uint8 [n, R, R, 3] (, int64 [n]) on `device`
        if data_digest is not None:
            data_digest.update(images.cpu().numpy().tobytes())
        reals = stage_rules.real_batch(images, job.cfg, device)  # [n, 3, R, R] in [-1, 1]
        if job.fault_nan_at is not None and nimg >= job.fault_nan_at and rank == 0:
            reals = reals * float("nan")
        try:
            stats = train_step(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, reals, alpha, job.cfg,
                               real_labels=labels[0] if labels else None, label_probs=probs)
        except NonFiniteLossError as e:
            raise NonFiniteLossError(f"{e} at {job.res}x{job.res}, {nimg} images into the stage "
                                              f"(alpha {alpha:.3f})") from None
        before, nimg, steps = nimg, nimg + plan.batch_size, steps + 1
        if stage_rules.fade_ended(plan.fade_nimg, before, nimg):  # before the fade-end checkpoint: resume-safe
            stage_rules.reset_optimizers(nets.opt_G, nets.opt_D)
            progress.note(f"fade-in done at {nimg / 1000:g} kimg: both Adam states reset (as the official code)")
        progress.step(stats, nimg, alpha)
        if nimg >= next_ckpt:
            progress.pause()
            _report(job, nets, nimg, rank, {"nimg": nimg, **progress.last})
            progress.resume()
            next_ckpt = _next_checkpoint(plan, job, nimg)
    digests = _gather({"rank": rank, "node": node, "pid": os.getpid(), "steps": steps,
                       "data": data_digest.hexdigest() if data_digest is not None else None,
                       "params": param_digest(nets.G, nets.D, nets.G_ema)})
    progress.finished(digests)


# ----------------------------------------------------------------------------------------------------------------
# The driver side.

def _training_dataset(job: StageJob):
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    fs, path = st.pyarrow_filesystem(level_url(job.dataset_url, job.res), job.cfg.storage)
    columns = ["image", "label"] if job.num_classes else ["image"]
    return ray.data.read_parquet(path, filesystem=fs, shuffle="files").select_columns(columns)


def failure_reason(error: BaseException) -> str:
    """The root cause of a failed Ray Train run as one line ('NonFiniteLossError: ...')."""
    failures = list((getattr(error, "worker_failures", None) or {}).values()) or [error]
    cause = getattr(failures[0], "cause", None) or failures[0]          # a RayTaskError wraps the user's error
    text = str(cause)
    found = re.findall(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception|Interrupt)): (.+)$", text, flags=re.M)
    if len(text.splitlines()) > 1 and found:                             # a formatted traceback: its last error
        kind, msg = found[-1]
        return f"{kind}: {msg.strip()}"
    return f"{type(cause).__name__}: {' '.join(text.split())}"[:500]


def run_stage(job: StageJob) -> dict[str, Any]:
    """Train one stage to its end (resuming from its newest checkpoint if any); returns
    {"checkpoint": URL of the final checkpoint, "nimg", "alpha"}. Raises StageFailedError when retries run out."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    cfg, sc = job.cfg, job.cfg.scaling
    fs, stages_path = st.pyarrow_filesystem(job.stages_url, cfg.storage)
    resources = {"CPU": sc.cpus_per_worker, **({"GPU": 1} if sc.use_gpu else {})}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": job},
        scaling_config=ray.train.ScalingConfig(num_workers=sc.num_workers, use_gpu=sc.use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=job.name, storage_path=stages_path, storage_filesystem=fs,
            failure_config=ray.train.FailureConfig(max_failures=sc.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=3),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),        # not a line per report
            worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}}),  # else lines print twice
        datasets={"train": _training_dataset(job)},
        torch_config=TorchConfig(backend="nccl" if sc.use_gpu else "gloo"),
    )
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as e:
        raise StageFailedError(f"stage {job.res}x{job.res} failed after {sc.max_failures + 1} attempt(s) "
                               f"(scaling.max_failures={sc.max_failures}): {failure_reason(e)}") from None
    return _final_checkpoint(job, result.checkpoint)


def _final_checkpoint(job: StageJob, registered) -> dict[str, Any]:
    """{"checkpoint", "nimg", "alpha"} of the stage's final checkpoint: Ray's latest, or the newest on storage
    (if the final one was written but not registered before a crash)."""
    total = stage_plan(job.cfg, job.res).total_nimg
    candidates = [_checkpoint_url(job, registered.path)] if registered is not None else []
    candidates += [url for _, url in ckpt_io.list_checkpoints(st.join(job.stages_url, job.name), job.cfg.storage)]
    for url in candidates:
        try:
            meta = ckpt_io.read_meta(url, job.cfg.storage)
        except ckpt_io.CheckpointError:
            continue
        if meta["stage_nimg"] >= total:
            return {"checkpoint": url, "nimg": meta["stage_nimg"], "alpha": meta["alpha"]}
    raise StageFailedError(f"stage {job.res}x{job.res} ended without a final checkpoint under "
                           f"{st.join(job.stages_url, job.name)}")


def main(argv: list[str] | None = None) -> int:
    from pggan.config_args import add_config_args, config_from_args
    from pggan.dataset import dataset_url
    from pipelines.runtime import init_ray, worker_config

    parser = argparse.ArgumentParser(prog="train_stage", description="Train one stage of a run (one resolution) "
                                     "as a Ray Train job; full_run.py runs all stages in order.")
    add_config_args(parser)
    parser.add_argument("--run-id", required=True, help="the run the stage belongs to")
    parser.add_argument("--res", type=int, required=True, help="the stage's resolution")
    parser.add_argument("--seed-checkpoint", default=None, help="the previous stage's final checkpoint URL")
    args = parser.parse_args(argv)
    cfg = worker_config(config_from_args(args))
    init_ray(cfg)
    started = time.monotonic()
    out = run_stage(StageJob(cfg, args.run_id, args.res, dataset_url(cfg), args.seed_checkpoint,
                             fault_nan_at=fault_from_env(args.res)))
    print(f"stage {args.res}x{args.res} done in {time.monotonic() - started:.1f} s: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
