"""Images/s of the real training step (pggan.train_step.train_step: WGAN-GP D+G, fade-in, Adam, EMA) per resolution,
its FLOPs (torch's flop counter over the whole step, gradient penalty's double backward included), this machine's
fp32 matmul peak measured in the same run with the same threads, and the fraction of that peak the step reaches."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from pggan.config import PipelineConfig, load_config
from pggan.config_args import add_config_args
from pggan.schedule import batch_size_at, lr_at
from pggan.stage_nets import build_stage
from pggan.train_step import train_step

ALPHA = 0.5                                                     # mid fade-in: both RGB paths and the real blend run
PEAK_SIZES = (1024, 2048, 3072)                                 # square fp32 torch.mm sides for the run's peak
PEAK_REPEATS = 5                                                # best of this many per size
PROBE_SIZE = 2048                                               # the short peak probe taken beside every timed step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, sizes: tuple[int, ...] = PEAK_SIZES,
                  repeats: int = PEAK_REPEATS) -> tuple[float, float]:
    """Best fp32 GFLOP/s of large square torch.mm (2 n^3 FLOPs each) in this process, with its threads:
    (per wall second, per CPU second of this process)."""
    best, best_cpu = 0.0, 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        torch.mm(a, b)                                          # warm-up (allocation, library dispatch)
        for _ in range(repeats):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            torch.mm(a, b)
            _sync(device)
            gflop = 2 * n ** 3 / 1e9
            best = max(best, gflop / (time.perf_counter() - t0))
            best_cpu = max(best_cpu, gflop / max(time.process_time() - c0, 1e-9))
    return best, best_cpu


class _GlobalOnly:
    """Stands in for FlopCounterMode's module tracker: its backward hooks on module inputs break the gradient
    penalty's autograd.grad ("A leaf node was passed to _will_engine_execute_node"); one global total is enough."""
    parents = {"Global"}

    def __enter__(self) -> "_GlobalOnly":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def step_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call of `step` as torch's flop counter registry counts them (matmuls and convolutions:
    forward, backward and the penalty's double backward; elementwise work, Adam and the EMA count zero)."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()
    with counter:
        step()
    return counter.get_total_flops()


def measure(cfg: PipelineConfig, res: int, steps: int, warmup: int, device: torch.device,
            batch: int | None) -> dict:
    """Time `steps` full steps at `res` after `warmup` untimed ones; one process, this process's threads.

    Each timed step is preceded by a short matmul probe (one PROBE_SIZE torch.mm, best of 2), so each step's
    fraction of peak is taken against the machine as it was that second: on a shared machine the load drifts
    more between seconds than the step's own speed does. `fraction_of_peak` is the median of those per-step
    fractions; `fraction_of_run_peak` divides the median step's rate by the best matmul rate of the whole run.
    `fraction_of_peak_cpu` does the same per CPU second of this process (step FLOPs per CPU second over matmul
    FLOPs per CPU second): with --threads 1 it is nearly blind to other processes' load; with more threads
    OpenMP's spinning at barriers while a sibling thread is descheduled still counts against it.
    """
    batch = batch or batch_size_at(cfg.schedule, res)
    nets = build_stage(cfg.model, cfg.optim, res, lr_at(cfg.schedule, cfg.optim, res), device, cfg.optim.seed)
    reals = torch.rand(batch, 3, res, res, device=device) * 2 - 1  # [N, 3, R, R] stand-in data in [-1, 1]

    def step() -> None:
        train_step(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, reals, ALPHA, cfg)
        _sync(device)

    load = os.getloadavg()[0]
    peak, peak_cpu = matmul_gflops(device)
    for _ in range(warmup):
        step()
    flops = step_flops(step)
    times, cpu_times, fractions, fractions_cpu = [], [], [], []
    for _ in range(steps):
        probe, probe_cpu = matmul_gflops(device, (PROBE_SIZE,), 2)
        peak, peak_cpu = max(peak, probe), max(peak_cpu, probe_cpu)
        cpu0, t0 = time.process_time(), time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - cpu0)
        fractions.append(flops / times[-1] / 1e9 / probe)
        fractions_cpu.append(flops / cpu_times[-1] / 1e9 / probe_cpu)
    # CPU seconds per step: on a shared machine the wall clock is dominated by other people's load, while CPU
    # time (with --threads 1) is what a quiet core would take.
    seconds, best = statistics.median(times), min(times)
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    return {
        "benchmark": "train_step", "resolution": res, "batch": batch, "alpha": ALPHA,
        "images_per_s": round(batch / seconds, 1), "images_per_s_best": round(batch / best, 1),
        "images_per_cpu_s": round(batch * steps / sum(cpu_times), 1), "step_ms": round(seconds * 1000, 1),
        "step_gflop": round(flops / 1e9, 3), "step_gflops": round(flops / seconds / 1e9, 1),
        "peak_gflops": round(peak, 1), "fraction_of_peak": round(statistics.median(fractions), 3),
        "fraction_of_peak_range": [round(min(fractions), 3), round(max(fractions), 3)],
        "fraction_of_run_peak": round(flops / seconds / 1e9 / peak, 3),
        "peak_gflops_per_cpu_s": round(peak_cpu, 1), "fraction_of_peak_cpu": round(statistics.median(fractions_cpu), 3),
        "load_avg_1min": [round(load, 1), round(os.getloadavg()[0], 1)],
        "device": str(device), "bf16": device.type == "cuda" and cfg.scaling.mixed_precision == "bf16",
        "threads": torch.get_num_threads(), "steps": steps,
        "latent_dim": cfg.model.latent_dim, "fmap_base": cfg.model.fmap_base, "fmap_max": cfg.model.fmap_max,
        "g_params": count(nets.G), "d_params": count(nets.D),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    add_config_args(p, set_example="model.fmap_max=32")
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
