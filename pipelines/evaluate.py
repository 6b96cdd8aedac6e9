"""Metrics and sample grids for a checkpoint's EMA generator (the honest evaluation of pggan.evaluation: SWD by
resolution, MS-SSIM and swd_ratio against a random sample of that level's real images), as plain functions that
also run as Ray tasks, and from the command line (one JSON line):

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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pggan import checkpoint as ckpt_io  # noqa: E402
from pggan import evaluation  # noqa: E402
from pggan import storage as st  # noqa: E402
from pggan.config import PipelineConfig, StorageConfig  # noqa: E402
from pggan.dataset import MANIFEST, level_name, read_manifest  # noqa: E402
from pggan.evaluation import EvaluateError  # noqa: E402
from pggan.generate import GenerateError, generate_images, load_generator, tracking_uri_for  # noqa: E402
from pggan.imaging import sample_grid_image  # noqa: E402
from pggan.nn import Generator  # noqa: E402


def generate_uint8(G: Generator, num_images: int, seed: int) -> np.ndarray:
    """num_images samples of G from seeded latents (on the GPU when there is one): uint8 [N, R, R, 3]."""
    return generate_images(on_gpu_if_any(G), num_images, seed)


def on_gpu_if_any(G: Generator) -> Generator:
    """G on the GPU when this process has one (full_run asks for a GPU task with use_gpu), else as it is."""
    return G.cuda() if torch.cuda.is_available() else G


def evaluate_checkpoint(checkpoint_url: str, dataset_url: str, res: int, num_images: int, seed: int,
                        storage: StorageConfig | None = None) -> dict[str, Any]:
    """evaluate_generator of a stage checkpoint's EMA generator (it must be at `res`)."""
    state = ckpt_io.load_checkpoint(checkpoint_url, storage)
    if state["resolution"] != res:
        raise ValueError(f"checkpoint {checkpoint_url} is at {state['resolution']}x{state['resolution']}, "
                         f"not {res}x{res}; pass the matching --res/dataset level")
    return evaluate_generator(ckpt_io.build_generator(state), dataset_url, res, num_images, seed, storage)


def evaluate_generator(G: Generator, dataset_url: str, res: int, num_images: int, seed: int,
                       storage: StorageConfig | None = None) -> dict[str, Any]:
    """The honest evaluation (pggan.evaluation.evaluate_dataset) of G against level `res`: a seeded random sample
    of the level's reals, as many fakes, SWD by resolution, MS-SSIM and swd_ratio against the data set's stored
    real-vs-real SWD. A G larger than `res` has its images box-downsampled to `res`."""
    return evaluation.evaluate_dataset(on_gpu_if_any(G), dataset_url, res, num_images, seed, storage)


def sample_grid(checkpoint_url: str, grid_size: int, seed: int, storage: StorageConfig | None = None) -> np.ndarray:
    """A grid_size x grid_size uint8 HWC grid from fixed latents (the same at every stage for a given seed), tiles
    enlarged to at least 64 px (imaging.sample_grid_image) so that 4x4 and 8x8 samples can be looked at."""
    state = ckpt_io.load_checkpoint(checkpoint_url, storage)
    fakes = generate_uint8(ckpt_io.build_generator(state), grid_size * grid_size, seed)   # uint8 [g*g, R, R, 3]
    return sample_grid_image(fakes, cols=grid_size)


# Not captured by a caller's placement group (a Tune trial's holds only the trial function's 0.01 CPU).
OUTSIDE_PLACEMENT_GROUP = "DEFAULT"


def _task(fn, use_gpu: bool):
    import ray

    return ray.remote(num_cpus=1, num_gpus=int(use_gpu), scheduling_strategy=OUTSIDE_PLACEMENT_GROUP)(fn)


def remote_evaluate_checkpoint(use_gpu: bool = False, **kwargs: Any):
    """evaluate_checkpoint as a Ray task (returns an ObjectRef); on a GPU when use_gpu (scaling.use_gpu)."""
    return _task(evaluate_checkpoint, use_gpu).remote(**kwargs)


def remote_sample_grid(use_gpu: bool = False, **kwargs: Any):
    """sample_grid as a Ray task (returns an ObjectRef); on a GPU when use_gpu (scaling.use_gpu)."""
    return _task(sample_grid, use_gpu).remote(**kwargs)


# ----------------------------------------------------------------------------------------------------------------
# `pggan evaluate` (arguments in pggan.cli.add_evaluate_args).

def dataset_levels(dataset_url: str, storage: StorageConfig) -> list[int]:
    """The resolutions of an ingested data set, from its manifest."""
    manifest = read_manifest(dataset_url, storage)
    if manifest is None:
        raise EvaluateError(f"--dataset {dataset_url}: no {MANIFEST}, so not an ingested data set (or its ingest "
                            "was interrupted); pass {root}/datasets/NAME, or run `pggan ingest` to build it")
    return [int(r) for r in manifest["resolutions"]]


def evaluate_source(args: argparse.Namespace, cfg: PipelineConfig) -> dict[str, Any]:
    """The metrics of --model's generator against --dataset's level of its resolution (or --resolution)."""
    num_images = cfg.eval.num_images if args.num_images is None else args.num_images
    if num_images < 2:
        raise EvaluateError(f"--num-images {num_images}: the metrics compare at least 2 images; the paper "
                            "uses 16384 for SWD (try 1000)")
    seed = cfg.eval.seed if args.seed is None else args.seed
    dataset = st.to_url(args.dataset)
    levels = dataset_levels(dataset, cfg.storage)
    G = load_generator(args.model, cfg.storage, tracking_uri_for(args.model, args.tracking_uri, cfg))
    res = args.resolution or G.resolution
    if res not in levels:
        raise EvaluateError(f"--dataset {dataset} has no {res}x{res} level ({level_name(res)}); its levels are "
                            f"{', '.join(level_name(r) for r in levels)}. Ingest the data at {res} or more, or "
                            "pass --resolution with one of those levels")
    metrics = evaluate_generator(G, dataset, res, num_images, seed, cfg.storage)
    return {**metrics, "model": args.model, "dataset": dataset}


def run(args: argparse.Namespace, cfg: PipelineConfig) -> int:
    """Print one JSON line: SWD by resolution, its average, the data set's real-vs-real SWD, swd_ratio, MS-SSIM
    and the sizes compared, of the generator against the data set."""
    try:
        result = evaluate_source(args, cfg)
    except (EvaluateError, GenerateError) as e:
        print(f"pggan evaluate: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    from pggan.cli import main as cli_main

    return cli_main(["evaluate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
