"""One variant of the next stage (e.g. 32x32), grown from a fixed checkpoint of the stage below (e.g. the demo
pipeline's r0016 stage end), with the SWD-ratio protocol of benchmarks/quality.py every tick. Run several at once,
one process per variant from the same start: ratio against images seen does not depend on the load, and img/s of
simultaneous processes compare under the same load. Prints (and appends to --json) one JSON line per tick.

    python benchmarks/grow_variants.py --start RUN/stages/r0016/nimg-0000020000 --dataset ROOT/datasets/NAME \
        --name lr003 --set schedule.lr_per_res.32=0.003 --kimg 20 --json out.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from pggan.checkpoint import load_checkpoint
from pggan.config import load_config
from pggan.config_args import add_config_args
from pggan.dataset import read_level_numpy
from pggan.progressive import Tick, train_progressive
from pggan.schedule import stage_plan
from pggan.stage_nets import StageNets

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from quality import RatioEvaluator  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", required=True, help="a checkpoint directory to grow from (res R)")
    p.add_argument("--dataset", required=True, help="the ingested data set URL ({root}/datasets/NAME)")
    add_config_args(p)
    p.add_argument("--name", default="base")
    p.add_argument("--kimg", type=float, default=20.0, help="images to train at 2R (fade included)")
    p.add_argument("--fade-kimg", type=float, default=4.0)
    p.add_argument("--tick-kimg", type=float, default=2.0)
    p.add_argument("--eval-images", type=int, default=256)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    start = load_checkpoint(a.start)
    res = 2 * start["resolution"]
    cfg = load_config(a.config, [f"data.resolution={res}", f"schedule.fade_kimg_per_res.{res}={a.fade_kimg}",
                                 f"schedule.stabilize_kimg_per_res.{res}={a.kimg - a.fade_kimg}", *a.overrides])
    plan = stage_plan(cfg, res)
    level = read_level_numpy(a.dataset, res, cfg.storage)                       # uint8 [N, res, res, 3]
    evaluate = RatioEvaluator({res: level}, a.eval_images, 0)
    evaluate.reference(res)
    out = open(a.json, "a") if a.json else None
    print(f"# {a.name}: {res}x{res} batch {plan.batch_size} lr {plan.lr} ema {cfg.optim.ema_beta} fade {plan.fade_nimg} "
          f"total {plan.total_nimg}", flush=True)
    cpu = {"start": time.process_time(), "eval": 0.0}

    def on_tick(tick: Tick, nets: StageNets) -> None:
        c0 = time.process_time()
        train_cpu = c0 - cpu["start"] - cpu["eval"]                             # evaluation CPU left out
        r = {"arm": a.name, "nimg": tick.stage_nimg, "seconds": round(tick.seconds, 1),
             "img_per_s": round(tick.stage_nimg / tick.seconds, 2), "alpha": round(tick.alpha, 3),
             "img_per_cpu_s": round(tick.stage_nimg / train_cpu, 2), **evaluate(nets.G_ema, res, tick.alpha)}
        cpu["eval"] += time.process_time() - c0
        print(json.dumps(r), flush=True)
        if out:
            out.write(json.dumps(r) + "\n")
            out.flush()

    train_progressive(cfg, {res: level}, on_tick, tick_kimg=a.tick_kimg, grow_from=start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
