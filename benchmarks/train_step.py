"""Images/s of the real training step (pggan.training.train_step: WGAN-GP D+G, fade-in, Adam, EMA) per resolution."""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from pggan.config import PipelineConfig, load_config
from pggan.schedule import batch_size_at, lr_at
from pggan.training import build_stage, train_step

ALPHA = 0.5                                                     # mid fade-in: both RGB paths and the real blend run


def measure(cfg: PipelineConfig, res: int, steps: int, warmup: int, device: torch.device,
            batch: int | None) -> dict:
    """Time `steps` full steps at `res` after `warmup` untimed ones; one process, this process's threads."""
    batch = batch or batch_size_at(cfg.schedule, res)
    nets = build_stage(cfg.model, cfg.optim, res, lr_at(cfg.schedule, cfg.optim, res), device, cfg.optim.seed)
    reals = torch.rand(batch, 3, res, res, device=device) * 2 - 1  # [N, 3, R, R] stand-in data in [-1, 1]

    def step() -> None:
        train_step(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, reals, ALPHA, cfg)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    times, cpu0 = [], time.process_time()
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    # Median and best wall time per step, and CPU seconds per step: on a shared machine the wall clock is
    # dominated by other people's load, while CPU time (with --threads 1) is what a quiet core would take.
    cpu = (time.process_time() - cpu0) / steps
    seconds, best = statistics.median(times), min(times)
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    return {
        "benchmark": "train_step", "resolution": res, "batch": batch, "alpha": ALPHA,
        "images_per_s": round(batch / seconds, 1), "images_per_s_best": round(batch / best, 1),
        "images_per_cpu_s": round(batch / cpu, 1), "step_ms": round(seconds * 1000, 1),
        "device": str(device), "bf16": device.type == "cuda" and cfg.scaling.mixed_precision == "bf16",
        "threads": torch.get_num_threads(), "steps": steps,
        "latent_dim": cfg.model.latent_dim, "fmap_base": cfg.model.fmap_base, "fmap_max": cfg.model.fmap_max,
        "g_params": count(nets.G), "d_params": count(nets.D),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default=None, help="YAML preset (default: pipelines/configs/demo.yaml)")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="config override, e.g. --set model.fmap_max=32 (repeatable)")
    p.add_argument("--resolutions", default="16,32", help="comma-separated resolutions (default: 16,32)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per resolution")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--batch", type=int, default=None, help="minibatch (default: schedule.batch_size[res])")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast (scaling.mixed_precision=bf16; the trainer uses it on CUDA only)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    precision = "bf16" if args.bf16 else "none"
    cfg = load_config(args.config, [*args.overrides, f"scaling.mixed_precision={precision}"])
    torch.manual_seed(cfg.optim.seed)
    for res in (int(r) for r in args.resolutions.split(",")):
        print(json.dumps(measure(cfg, res, args.steps, args.warmup, torch.device(args.device), args.batch)),
              flush=True)


if __name__ == "__main__":
    main()
