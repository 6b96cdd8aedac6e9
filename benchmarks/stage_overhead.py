"""What Ray Train costs a stage: steady-state images/s of one stage under Ray Train (1 worker) against the same
training step in a plain process (same model, minibatch, resolution; data in memory), the fixed cost per stage
(start, data pipeline, checkpoint saves, teardown) in seconds, and 2 workers against 1. Prints JSON lines.

    python benchmarks/stage_overhead.py [--config demo.yaml] [--res 16] [--kimg 6] [--repeats 3] [--root DIR]

Steady state = the median of the per-tick img/s after the first tick (which includes the data pipeline's start);
the plain loop is measured the same way, in windows of the same size.
The plain loop uses as many torch threads as the 1-worker Ray stage gets (scaling.cpus_per_worker = all cores).

The machine's own speed drifts by up to ~20% over tens of seconds (shared cores), more than the effect measured, so
the measurements are interleaved: plain, Ray 1 worker, plain, Ray 2 workers, plain, ... and each Ray stage is
compared with the mean of the plain loop just before and just after it. The summary gives the median of those
ratios over --repeats rounds and their range.

The plain loop runs in its own process with no Ray on the machine (Ray is shut down around it and started again for
each stage; ray.init is not counted in the fixed cost), so the ratio includes what Ray's own processes take from the
step. --plain-beside-ray runs it in this process beside an idle Ray instead, which leaves only Ray Train's share.

--idle-ray measures the floor under all of this: the plain loop in its own process with no Ray on the machine against
the same process beside an idle private Ray started as the pipeline starts it (no stage, no Ray Train), interleaved the
same way, with the CPU Ray's own processes took meanwhile (% of one core, from /proc; Linux only).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from pggan import storage as st  # noqa: E402
from pggan.batches import cycle_batches  # noqa: E402
from pggan.config import PipelineConfig, load_config  # noqa: E402
from pggan.dataset import dataset_url, read_level_numpy  # noqa: E402
from pggan.imaging import to_float  # noqa: E402
from pggan.stage_log import read_jsonl  # noqa: E402
from pggan.schedule import stage_plan  # noqa: E402
from pggan.stage_nets import build_stage  # noqa: E402
from pggan.train_step import train_step  # noqa: E402


def emit(**fields) -> None:
    print(json.dumps({"bench": "stage_overhead", **fields}), flush=True)


def bench_config(args: argparse.Namespace, workers: int, cpus_per_worker: float) -> PipelineConfig:
    """One stage at args.res with no fade-in (it is the start resolution), args.kimg images long."""
    return load_config(args.config, [
        f"storage.root={args.root}", f"data.resolution={args.res}", f"schedule.start_resolution={args.res}",
        "schedule.fade_kimg=0", f"schedule.stabilize_kimg={args.kimg}", "schedule.fade_kimg_per_res={}",
        "schedule.stabilize_kimg_per_res={}", f"schedule.tick_kimg={args.kimg / 10:g}",
        f"schedule.ckpt_kimg={args.kimg / 2:g}", f"scaling.num_workers={workers}",
        f"scaling.cpus_per_worker={cpus_per_worker}", "scaling.max_failures=0"])


def plain_loop(cfg: PipelineConfig, res: int, kimg: float, threads: int) -> dict:
    """img/s of train_step in this process on in-memory data (global minibatch, one process), measured like the
    Ray stage: the same number of images, in windows of schedule.tick_kimg, median of the windows after the first."""
    torch.set_num_threads(threads)
    plan = stage_plan(cfg, res)
    images = torch.from_numpy(read_level_numpy(dataset_url(cfg), res, cfg.storage))   # uint8 [N, R, R, 3]
    nets = build_stage(cfg.model, cfg.optim, res, plan.lr, "cpu", init_seed=0)
    stream = cycle_batches(iter(images.split(plan.batch_size)[:-1]), lambda: iter(()), plan.batch_size,
                                    cache_bytes=1 << 40)
    window = max(int(cfg.schedule.tick_kimg * 1000), plan.batch_size)
    rates, nimg, mark, clock = [], 0, 0, time.perf_counter()
    while nimg < kimg * 1000:
        reals = to_float(next(stream))
        train_step(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, reals, 1.0, cfg)
        nimg += plan.batch_size
        if nimg - mark >= window:
            now = time.perf_counter()
            rates.append((nimg - mark) / (now - clock))
            mark, clock = nimg, now
    steady = rates[1:] or rates
    return {"img_per_s": statistics.median(steady), "min": min(steady), "max": max(steady), "windows": len(rates)}


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, ... (man 5 proc, from field 3)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _descendants(root: int) -> list[int]:
    """Live processes below `root` (Ray's GCS, raylet, dashboard, workers ... below the driver), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(_stat_fields(int(entry))[1])
            except OSError:                                    # gone meanwhile
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _ticks_of(pids: list[int]) -> dict[int, int]:
    """CPU clock ticks (utime + stime) used so far by each of `pids` still alive."""
    out = {}
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        out[pid] = int(fields[11]) + int(fields[12])
    return out


def plain_process(args: argparse.Namespace, measure_ray_cpu: bool = False) -> dict:
    """The plain loop in a process of its own; with measure_ray_cpu, also the CPU (% of one core) that this
    process's other descendants (a running local Ray) took while it ran."""
    cmd = [sys.executable, os.path.abspath(__file__), "--plain-only", "--config", args.config,
           "--res", str(args.res), "--kimg", str(args.kimg), "--root", args.root]
    start = _ticks_of(_descendants(os.getpid())) if measure_ray_cpu else {}
    clock = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    others = [p for p in _descendants(os.getpid()) if p != proc.pid] if measure_ray_cpu else []
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"the plain loop failed (exit {proc.returncode}):\n{err[-2000:]}")
    result = json.loads(out.splitlines()[-1])
    if measure_ray_cpu:
        seconds, end = time.perf_counter() - clock, _ticks_of(others)
        used = sum(t - start.get(pid, 0) for pid, t in end.items())
        result["ray_cpu_pct_of_core"] = round(100 * used / os.sysconf("SC_CLK_TCK") / seconds, 1)
        result["ray_processes"] = len(end)
    return result


def ray_stage(cfg: PipelineConfig, res: int, run_id: str) -> dict:
    """Run the stage under Ray Train; steady img/s from its ticks, fixed cost = wall - training time."""
    from pipelines.runtime import worker_config
    from pipelines.train_stage import StageJob, run_stage

    cfg = worker_config(cfg)
    job = StageJob(cfg, run_id, res, dataset_url(cfg))
    started = time.perf_counter()
    out = run_stage(job)
    wall = time.perf_counter() - started
    ticks = read_jsonl(st.join(job.log_url, "metrics.jsonl"))
    steady = [t["img_per_s"] for t in ticks[1:]] or [ticks[-1]["img_per_s"]]
    training_s = sum(t["tick_s"] for t in ticks)
    return {"img_per_s": statistics.median(steady), "min": min(steady), "max": max(steady), "wall_s": round(wall, 2),
            "fixed_s": round(wall - training_s, 2), "nimg": out["nimg"],
            "threads": read_jsonl(st.join(job.log_url, "resume.jsonl"))[-1].get("threads")}


def plain_without_ray(args: argparse.Namespace, common: dict) -> float:
    """Shut Ray down, run the plain loop in its own process, report it; its img/s."""
    import ray

    ray.shutdown()
    p = plain_process(args)
    emit(case="plain", threads=os.cpu_count() or 1, ray_running=False, **common, **p)
    return p["img_per_s"]


def spread(xs: list[float]) -> dict:
    return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3), "max": round(max(xs), 3)}


def bracketed(ray_rate: float, before: float, after: float) -> float:
    """A Ray stage's img/s relative to the plain loop measured just before and just after it."""
    return ray_rate / ((before + after) / 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="demo.yaml", help="model and minibatch from this preset (demo.yaml)")
    parser.add_argument("--res", type=int, default=16, help="resolution of the stage (default 16)")
    parser.add_argument("--kimg", type=float, default=6.0, help="images (thousands) per Ray stage (default 6); "
                        "each plain-loop measurement runs half as many")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of plain / 1 worker / plain / 2 workers "
                        "(default 3; about 1.5 min each on 2 cores)")
    parser.add_argument("--root", default="/tmp/pggan-bench", help="storage root for data and runs")
    parser.add_argument("--plain-beside-ray", action="store_true", help="run the plain loop in this process beside "
                        "an idle Ray instead of in a process of its own with Ray shut down")
    parser.add_argument("--idle-ray", action="store_true", help="measure only what an idle private Ray on the "
                        "machine costs the plain loop (no stage); see the module doc")
    parser.add_argument("--plain-only", action="store_true", help=argparse.SUPPRESS)   # the plain loop's process
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.idle_ray and args.plain_beside_ray:
        parser.error("--idle-ray and --plain-beside-ray measure different things: give one")
    cores = os.cpu_count() or 1
    one, two = bench_config(args, 1, float(cores)), bench_config(args, 2, cores / 2)
    if args.plain_only:
        print(json.dumps(plain_loop(one, args.res, args.kimg / 2, threads=cores)), flush=True)
        return 0

    import ray

    from pipelines.ingest import ingest
    from pipelines.runtime import init_ray

    init_ray(one)
    ingest(one, log=lambda _: None)
    plan = stage_plan(one, args.res)
    common = {"res": args.res, "batch": plan.batch_size}
    beside = args.plain_beside_ray
    if args.idle_ray:
        return idle_ray(args, one, common)

    def plain() -> float:
        if not beside:
            return plain_without_ray(args, common)
        p = plain_loop(one, args.res, args.kimg / 2, threads=cores)
        emit(case="plain", threads=cores, ray_running=True, **common, **p)
        return p["img_per_s"]

    stamp = time.strftime("%H%M%S")
    cases = {"ray_1_worker": one, "ray_2_workers": two}
    ratios: dict[str, list[float]] = {case: [] for case in cases}
    fixed: dict[str, list[float]] = {case: [] for case in cases}
    before = plain()
    for i in range(args.repeats):
        for case, cfg in cases.items():
            init_ray(cfg)                                   # no-op when Ray is up (--plain-beside-ray)
            r = ray_stage(cfg, args.res, f"bench-{stamp}-{i}-{cfg.scaling.num_workers}w")
            after = plain()
            ratio = bracketed(r["img_per_s"], before, after)
            ratios[case].append(ratio)
            fixed[case].append(r["fixed_s"])
            emit(case=case, round=i, **common, **r, ratio_vs_plain=round(ratio, 3))
            before = after

    emit(case="summary", **common, cores=cores, repeats=args.repeats, plain_beside_ray=beside,
         ray_vs_plain=spread(ratios["ray_1_worker"]), two_workers_vs_plain=spread(ratios["ray_2_workers"]),
         two_vs_one_worker=round(statistics.median(ratios["ray_2_workers"])
                                 / statistics.median(ratios["ray_1_worker"]), 3),
         fixed_s_per_stage=spread(fixed["ray_1_worker"]), fixed_s_per_stage_2_workers=spread(fixed["ray_2_workers"]))
    ray.shutdown()
    return 0


def idle_ray(args: argparse.Namespace, cfg: PipelineConfig, common: dict) -> int:
    """Rounds of: plain loop with no Ray, then the same beside an idle private Ray (started as the pipeline starts
    it, given a few seconds to settle); each beside-Ray figure against the Ray-free runs just before and after."""
    import ray

    from pipelines.runtime import init_ray

    cores = os.cpu_count() or 1
    before = plain_without_ray(args, common)
    ratios, cpu = [], []
    for i in range(args.repeats):
        init_ray(cfg)
        time.sleep(5)
        beside = plain_process(args, measure_ray_cpu=True)
        after = plain_without_ray(args, common)
        ratios.append(bracketed(beside["img_per_s"], before, after))
        cpu.append(beside["ray_cpu_pct_of_core"])
        emit(case="plain_beside_idle_ray", round=i, threads=cores, **common, **beside,
             ratio_vs_plain=round(ratios[-1], 3))
        before = after
    emit(case="summary_idle_ray", **common, cores=cores, repeats=args.repeats, idle_ray_vs_plain=spread(ratios),
         ray_cpu_pct_of_core=spread(cpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
