"""Quality per minute: train in one process (pggan.progressive: the pipeline's networks, step and schedule, no Ray)
and print, every tick, training wall seconds (evaluation excluded, reported apart), images seen, where the schedule
stands and the SWD ratio at the current resolution; then the time and images to first reach ratio <= 2.0 and
<= 1.5 at the final resolution, and the best ratio.

SWD ratio = SWD(EMA generator's images from fixed latents, a seeded random sample of reals)
          / SWD(two disjoint seeded random halves of the reals), same size, resolution and SWD seed (computed once
            per level): 1.0 means as close to the data as two real samples are to each other.

    python benchmarks/quality.py                                  # demo config, built-in synthetic set, 32x32
    python benchmarks/quality.py --minutes 5 --set model.fmap_max=64 --eval-images 512
    python benchmarks/quality.py --source ~/pictures              # any folder or bucket of images
    python benchmarks/quality.py --compare-direct --minutes 10    # progressive vs training at 32x32 from scratch
    python benchmarks/quality.py --variant wide:model.fmap_max=64 --variant lr:optim.lr=0.003  # interleaved arms

Several arms (--variant, --compare-direct) run interleaved in one process, one tick each in turn, so that load
from other processes hits all of them alike; each arm's clock counts only its own training.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any, Callable

import numpy as np
import torch

from pggan import storage as st
from pggan.checkpoint import build_generator, load_checkpoint
from pggan.config import PipelineConfig, load_config
from pggan.config_args import add_config_args
from pggan.dataset import read_level_numpy
from pggan.imaging import ImageDecodeError, box_pyramid, decode_pyramid, square_resize, to_uint8
from pggan.metrics.progress import common_level, compare_summaries, quality_summary
from pggan.evaluation import compute_reference, memory_level, usable_size
from pggan.metrics.reference import eval_indices, swd_ratio
from pggan.metrics.swd import sliced_wasserstein
from pggan.progressive import Tick, train_progressive
from pggan.resolutions import resolutions
from pggan.sampling import generate, sample_latents
from pggan.schedule import stage_resolutions, total_nimg
from pggan.synthetic import image_rng, synthetic_image

OPEN_ENDED_KIMG = 1e6            # final-stage stabilization when the time budget, not the schedule, ends a run


# ----------------------------------------------------------------------------------------------------------------
# Data: levels in memory, made as ingest makes them (decode, fit, Lanczos to the top level, 2x2 box pyramid).

def stack_levels(pyramids: list[dict[int, np.ndarray]], top: int) -> dict[int, np.ndarray]:
    """Per-image pyramids -> {res: uint8 [N, res, res, 3]} for res = 4 .. top."""
    return {r: np.stack([p[r] for p in pyramids]) for r in resolutions(top)}


def synthetic_levels(cfg: PipelineConfig, seed: int = 0) -> dict[int, np.ndarray]:
    """The built-in demo set (the same images ingest writes as PNGs for data.source=synthetic), as levels."""
    d = cfg.data
    return stack_levels([box_pyramid(square_resize(synthetic_image(image_rng(seed, i), d.synthetic_size),
                                                   d.resolution)) for i in range(d.synthetic_count)], d.resolution)


def source_levels(cfg: PipelineConfig, url: str) -> dict[int, np.ndarray]:
    """Every decodable image under a folder or bucket URL (names starting with '_' or '.' skipped, as ingest)."""
    fs, root = st.fsspec_filesystem(st.to_url(url), cfg.storage)
    d, pyramids, skipped = cfg.data, [], 0
    for path in sorted(fs.find(root)):
        if any(part.startswith(("_", ".")) for part in path[len(root):].split("/")):
            continue
        try:
            pyramids.append(decode_pyramid(fs.cat_file(path), d.resolution, fit=d.fit, background=d.background,
                                           max_pixels=d.max_pixels, min_side=d.min_side or d.resolution))
        except ImageDecodeError:
            skipped += 1
    if len(pyramids) < 2:
        raise SystemExit(f"--source {url}: found {len(pyramids)} usable image(s) ({skipped} skipped); need a "
                         f"folder of images at least {d.min_side or d.resolution} px on the short side")
    print(f"# source {url}: {len(pyramids)} images ({skipped} skipped)", flush=True)
    return stack_levels(pyramids, d.resolution)


def dataset_levels(cfg: PipelineConfig, url: str) -> dict[int, np.ndarray]:
    """An ingested data set ({root}/datasets/NAME), read with plain pyarrow."""
    return {r: read_level_numpy(url, r, cfg.storage) for r in resolutions(cfg.data.resolution)}


# ----------------------------------------------------------------------------------------------------------------
# Evaluation: the SWD ratio of the EMA generator at the current resolution.

class RatioEvaluator:
    """SWD ratio of a generator against a level, with the level's real sample and real-vs-real reference computed
    once (per resolution) and the same latents every time. Thread-safe: arms share one evaluator."""

    def __init__(self, levels: dict[int, np.ndarray], num_images: int, seed: int):
        self.levels, self.requested, self.seed = levels, num_images, seed
        self.refs: dict[int, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def reference(self, res: int) -> dict[str, Any]:
        with self.lock:
            if res not in self.refs:
                t0 = time.perf_counter()
                level = memory_level(self.levels[res])
                n = usable_size(level, self.requested)
                ref = compute_reference(level, n, self.seed)          # the pipeline's real-vs-real protocol
                ref.update(reals=level.read_rows(eval_indices(level.total, n, res, self.seed)),
                           seconds=round(time.perf_counter() - t0, 3))
                self.refs[res] = ref
            return self.refs[res]

    def __call__(self, G_ema: torch.nn.Module, res: int, alpha: float) -> dict[str, Any]:
        """During a fade-in the generator's output at `alpha` (what it makes at that moment) is compared with the
        level's reals as they are, not blended: the ratio says how far the current images are from the data."""
        ref = self.reference(res)
        t0 = time.perf_counter()
        z = sample_latents(ref["num_images"], G_ema.model.latent_dim, self.seed)        # [n, latent]
        fakes = to_uint8(generate(G_ema, z, alpha))                                      # [n, R, R, 3]
        fake = sliced_wasserstein(ref["reals"], fakes, seed=self.seed)["avg"]
        return {"swd_ratio": round(swd_ratio(fake, ref["swd_avg"]), 4),
                "swd_fake": round(fake, 3), "swd_real": round(ref["swd_avg"], 3),
                "eval_images": ref["num_images"], "eval_s": round(time.perf_counter() - t0, 3)}


# ----------------------------------------------------------------------------------------------------------------
# Arms, taking turns tick by tick.

class Turns:
    """A baton passed between arm threads at ticks: one trains at a time, in a fixed order."""

    def __init__(self, names: list[str]):
        self.active, self.current, self.cond = list(names), names[0], threading.Condition()

    def wait(self, name: str) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.current == name)

    def _advance(self, name: str) -> None:
        i = self.active.index(name)
        self.current = self.active[(i + 1) % len(self.active)]

    def pass_on(self, name: str) -> None:
        with self.cond:
            self._advance(name)
            self.cond.notify_all()

    def leave(self, name: str) -> None:
        with self.cond:
            if self.current == name and len(self.active) > 1:
                self._advance(name)
            self.active.remove(name)
            self.cond.notify_all()


def tick_line(arm: str, point: dict[str, Any]) -> str:
    return (f"[{arm}] train {point['seconds']:8.1f}s  eval {point['eval_s']:5.2f}s  {point['nimg'] / 1000:8.2f} kimg  "
            f"{point['resolution']:>4}x{point['resolution']:<4} {point['phase']:<9} alpha {point['alpha']:.2f}  "
            f"swd_ratio {point['swd_ratio']:7.3f}  (fake {point['swd_fake']:.1f} / real {point['swd_real']:.1f})")


def run_arm(name: str, cfg: PipelineConfig, levels: dict[int, np.ndarray], evaluate: RatioEvaluator,
            budget_s: float, tick_kimg: float | None, turns: Turns, emit: Callable[[dict], None]) -> list[dict]:
    """Train one arm until its schedule ends or its training seconds reach budget_s; a point per tick.
    Arms share torch's global RNG (train_progressive seeds it per stage); with the fixed turn order a run is still
    reproducible, but an arm's random stream depends on the arms beside it."""
    points: list[dict] = []

    def on_tick(tick: Tick, nets) -> bool:
        point = {"arm": name, "seconds": tick.seconds, "nimg": tick.total_nimg, "resolution": tick.resolution,
                 "phase": tick.phase, "alpha": round(tick.alpha, 4), "stage_end": tick.stage_end,
                 **evaluate(nets.G_ema, tick.resolution, tick.alpha)}
        points.append(point)
        emit(point)
        if tick.seconds >= budget_s:
            return True
        turns.pass_on(name)
        turns.wait(name)
        return False

    turns.wait(name)
    try:
        train_progressive(cfg, levels, on_tick, tick_kimg=tick_kimg)
    finally:
        turns.leave(name)
    return points


def open_ended(cfg: PipelineConfig, overrides: list[str]) -> list[str]:
    """Overrides that let the final stage stabilize until the time budget ends the run."""
    return [*overrides, f"schedule.stabilize_kimg_per_res.{cfg.data.resolution}={OPEN_ENDED_KIMG}"]


def arm_configs(args: argparse.Namespace) -> dict[str, PipelineConfig]:
    base = load_config(args.config, args.overrides)
    extra = (lambda o: open_ended(base, o)) if args.until_budget or args.compare_direct else (lambda o: o)
    arms = {"progressive" if args.compare_direct else "base": load_config(args.config, extra(args.overrides))}
    if args.compare_direct:
        arms["direct"] = load_config(args.config, extra([*args.overrides,
                                                         f"schedule.start_resolution={base.data.resolution}"]))
    for spec in args.variants:
        name, _, sets = spec.partition(":")
        if not name or not sets:
            raise SystemExit(f"--variant {spec!r}: expected NAME:key=value[;key=value...]")
        arms[name] = load_config(args.config, extra([*args.overrides, *sets.split(";")]))
    return arms


def report(results: dict[str, list[dict]], top: int, emit: Callable[[dict], None]) -> None:
    """Each arm's summary at the final resolution, then direct against progressive where both ran."""
    summaries = {}
    for name, points in results.items():
        s = quality_summary(points, top)
        last = points[-1] if points else {"seconds": 0.0, "nimg": 0}
        s.update(arm=name, summary=True, train_s=last["seconds"], nimg=last["nimg"],
                 img_per_s=round(last["nimg"] / last["seconds"], 1) if last["seconds"] else None,
                 eval_s=round(sum(p["eval_s"] for p in points), 1))
        summaries[name] = s
        emit(s)
        reached = "  ".join(f"<= {t:g}: " + (f"{r['seconds']:.0f}s / {r['nimg'] / 1000:.1f} kimg" if r
                                             else "not reached") for t, r in s["reached"].items())
        best = s["best"]
        print(f"== {name}: {s['train_s']:.0f}s training ({s['img_per_s']} img/s), {s['nimg'] / 1000:.1f} kimg, "
              f"eval {s['eval_s']}s; at {top}x{top}: {reached}; best "
              + (f"{best['swd_ratio']:.3f} at {best['seconds']:.0f}s / {best['nimg'] / 1000:.1f} kimg" if best
                 else "none (never reached the final resolution)"), flush=True)
    if "direct" in summaries:
        for row in compare_summaries(summaries["progressive"], summaries["direct"]):
            emit({"comparison": "direct/progressive", **row})
            if "time_ratio" in row:
                print(f"== ratio <= {row['threshold']:g}: direct/progressive wall time {row['time_ratio']:.2f}, "
                      f"images {row['nimg_ratio']:.2f}", flush=True)
            else:
                print(f"== ratio <= {row['threshold']:g}: not reached by both; best progressive "
                      f"{row['baseline_best']}, direct {row['other_best']}", flush=True)
        common = common_level(results["progressive"], results["direct"], top)
        if common is not None:
            emit({"comparison": "direct/progressive at the worse best ratio", **common})
            mine, theirs = common["baseline"], common["other"]
            print(f"== ratio <= {common['threshold']:.3f} (the lowest both reached): progressive "
                  f"{mine['seconds']:.0f}s / {mine['nimg'] / 1000:.1f} kimg, direct {theirs['seconds']:.0f}s / "
                  f"{theirs['nimg'] / 1000:.1f} kimg: direct/progressive wall time {common['time_ratio']:.2f}, "
                  f"images {common['nimg_ratio']:.2f}",
                  flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p, set_example="model.fmap_max=64", set_scope="one setting of every arm")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--source", default=None, help="a folder or bucket URL of images (default: data.source, "
                                                     "'synthetic' = the built-in demo set)")
    data.add_argument("--dataset", default=None, help="an ingested data set URL ({root}/datasets/NAME)")
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per arm, evaluation excluded")
    p.add_argument("--eval-images", type=int, default=256, help="images per SWD set (capped at half the level)")
    p.add_argument("--eval-seed", type=int, default=0)
    p.add_argument("--tick-kimg", type=float, default=None, help="evaluate every this many kimg "
                                                                 "(default: schedule.tick_kimg)")
    p.add_argument("--compare-direct", action="store_true",
                   help="also train at data.resolution from scratch (no growing), interleaved, same budget")
    p.add_argument("--variant", action="append", default=[], dest="variants", metavar="NAME:KEY=V[;KEY=V]",
                   help="another arm with these overrides on top of --set, interleaved (repeatable)")
    p.add_argument("--until-budget", action="store_true",
                   help="let the final stage run until --minutes (implied by --compare-direct)")
    p.add_argument("--checkpoint", default=None, help="no training: the SWD ratio of this checkpoint's EMA generator "
                                                      "(e.g. a pipeline run's final one) against the data, and exit")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--json", default=None, help="append every tick and the summary as JSON lines to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    arms = arm_configs(args)
    cfg = next(iter(arms.values()))
    source = args.source or cfg.data.source
    t0 = time.perf_counter()
    levels = (dataset_levels(cfg, args.dataset) if args.dataset else
              synthetic_levels(cfg) if source == "synthetic" else source_levels(cfg, source))
    top = cfg.data.resolution
    print(f"# data: {len(levels[top])} images, levels {sorted(levels)} in {time.perf_counter() - t0:.1f}s; "
          f"torch threads {torch.get_num_threads()}; budget {args.minutes:g} min per arm", flush=True)
    for name, c in arms.items():
        print(f"# arm {name}: stages {stage_resolutions(c)}, {total_nimg(c) / 1000:g} kimg scheduled, model latent "
              f"{c.model.latent_dim} fmap_max {c.model.fmap_max}, batch {c.schedule.batch_size}, lr {c.optim.lr} "
              f"{c.schedule.lr_per_res}, ema {c.optim.ema_beta}", flush=True)
    evaluate = RatioEvaluator(levels, args.eval_images, args.eval_seed)
    ref = evaluate.reference(top)
    print(f"# reference at {top}: real-vs-real SWD {ref['swd_avg']:.2f} with {ref['num_images']} + "
          f"{ref['num_images']} images ({ref['seconds']:.1f}s)", flush=True)
    if args.checkpoint:
        G = build_generator(load_checkpoint(args.checkpoint, cfg.storage))
        result = {"checkpoint": args.checkpoint, "resolution": G.resolution, **evaluate(G, G.resolution, 1.0)}
        print(json.dumps(result), flush=True)
        return 0
    lock = threading.Lock()
    out = open(args.json, "a") if args.json else None

    def emit(record: dict) -> None:
        with lock:
            if "seconds" in record and "summary" not in record:
                print(tick_line(record["arm"], record), flush=True)
            if out is not None:
                out.write(json.dumps(record) + "\n")
                out.flush()

    turns, results, errors = Turns(list(arms)), {}, []

    def worker(name: str, c: PipelineConfig) -> None:
        try:
            results[name] = run_arm(name, c, levels, evaluate, args.minutes * 60, args.tick_kimg, turns, emit)
        except BaseException as e:                                   # re-raised by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=item, name=item[0]) for item in arms.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    report(results, top, emit)
    if out is not None:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
