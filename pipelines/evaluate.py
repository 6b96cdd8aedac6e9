"""Metrics and sample grids of a checkpoint's EMA generator as Ray tasks (the stage end of full_run), and the
`pggan evaluate` entry point; the work is pggan.evaluation's. From the command line (one JSON line):

    pggan evaluate --model MODELS_URI_OR_CHECKPOINT --dataset DATASET_URL [--num-images N] [--seed S] [--resolution R]
    python pipelines/evaluate.py ...  (the same arguments; --checkpoint is an alias of --model)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pggan import evaluation  # noqa: E402
from pggan.config import ConfigError  # noqa: E402
from pggan.config_args import add_config_args, add_tracking_uri_arg, config_from_args  # noqa: E402
from pggan.evaluation import EvaluateError  # noqa: E402
from pggan.generate import GenerateError  # noqa: E402

# Not captured by a caller's placement group (a Tune trial's holds only the trial function's 0.01 CPU).
OUTSIDE_PLACEMENT_GROUP = "DEFAULT"


def _task(fn, use_gpu: bool):
    import ray

    return ray.remote(num_cpus=1, num_gpus=int(use_gpu), scheduling_strategy=OUTSIDE_PLACEMENT_GROUP)(fn)


def remote_evaluate_checkpoint(use_gpu: bool = False, **kwargs: Any):
    """evaluation.evaluate_checkpoint as a Ray task (returns an ObjectRef); on a GPU when use_gpu
    (scaling.use_gpu)."""
    return _task(evaluation.evaluate_checkpoint, use_gpu).remote(**kwargs)


def remote_sample_grid(use_gpu: bool = False, **kwargs: Any):
    """evaluation.sample_grid as a Ray task (returns an ObjectRef); on a GPU when use_gpu (scaling.use_gpu)."""
    return _task(evaluation.sample_grid, use_gpu).remote(**kwargs)


# ----------------------------------------------------------------------------------------------------------------
# `pggan evaluate` and `python pipelines/evaluate.py`.

def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "--checkpoint", dest="model", required=True,
                        help="models:/NAME@ALIAS (e.g. models:/pggan@champion), runs:/ID/generator, or a stage "
                             "checkpoint folder/URL ({root}/runs/ID/stages/r0008/nimg-...); --checkpoint is an alias")
    parser.add_argument("--dataset", required=True, help="an ingested data set URL ({root}/datasets/NAME)")
    parser.add_argument("--num-images", type=int, default=None,
                        help="real and generated images compared, at least 2, capped at half the level so that the "
                             "real-vs-real reference has two disjoint halves (default: the config's eval.num_images; "
                             "the paper: 16384)")
    parser.add_argument("--seed", type=int, default=None,
                        help="latent and metric seed; the same seed gives the same numbers (default: eval.seed)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="data set level to compare at (default: the generator's; a lower one box-downsamples "
                             "the generated images)")
    add_tracking_uri_arg(parser)
    add_config_args(parser)  # storage.* (S3 endpoint, keys), tracking.uri


def run(args: argparse.Namespace, prog: str = "evaluate") -> int:
    """Print one JSON line: SWD by resolution, its average, the data set's real-vs-real SWD, swd_ratio, MS-SSIM
    and the sizes compared, of the generator against the data set. Error lines start with `prog`, the command the
    user typed (`pggan evaluate` passes its own)."""
    try:
        result = evaluation.evaluate_model(args.model, args.dataset, config_from_args(args), args.num_images,
                                           args.seed, args.resolution, args.tracking_uri)
    except (ConfigError, EvaluateError, GenerateError) as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evaluate", description=run.__doc__.split(".")[0] + ".")
    add_args(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
