"""The honest evaluation of a generator against one level of a data set, without Ray: n = eval_size(level rows,
num_images) reals drawn at random from the whole level (seeded), n fakes from the seed's fixed latents, their SWD
keyed by resolution and MS-SSIM, next to the data set's own real-vs-real SWD (two disjoint random halves of n,
the same SWD seed), so that `swd_ratio` = fake SWD / real-vs-real SWD reads without knowing the data set.

The real-vs-real reference of a stored data set is computed once per (level, n, seed) and kept beside its manifest,
{dataset}/swd_reference/r0032-n256-s0.json (one file per key: concurrent trials never write the same file with
different content). Ingesting again removes the data set folder, and with it the stale references.

Results are JSON-shaped: per-level values are keyed by the resolution as a string ({"32": .., "16": ..}, finest
first), as they read back from run.json, MLflow or `pggan evaluate`'s JSON line.

    level = stored_level(dataset_url, 32, storage)            # or memory_level(uint8 [N, 32, 32, 3])
    reference = stored_reference(dataset_url, level, 256, 0)  # or compute_reference(level, 256, 0)
    result = evaluate_generator(G, level, num_images=256, seed=0, reference=reference)

The stage-end evaluation and sample grid of a checkpoint (evaluate_checkpoint, sample_grid: pipelines/evaluate.py
runs them as Ray tasks) and `pggan evaluate` of a registered model or checkpoint (evaluate_model) are at the end.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import torch

from pggan import checkpoint as ckpt_io
from pggan.class_eval import class_summary, evaluate_classes
from pggan import storage as st
from pggan.dataset import MANIFEST, count_rows, level_name, read_level_rows, read_manifest
from pggan.generate import generate_images, load_generator, tracking_uri_for
from pggan.nn.factory import is_style_generator
from pggan.imaging import box_pyramid, sample_grid_image
from pggan.labels import per_class_labels
from pggan.metrics import evaluate_images
from pggan.metrics.reference import (eval_indices, eval_size, real_vs_real_swd, reference_split, swd_by_resolution,
                                     swd_ratio, swd_ratio_levels)

if TYPE_CHECKING:
    from pggan.config import PipelineConfig, StorageConfig

REFERENCE_DIR = "swd_reference"
LEVEL_KEYS = ("swd", "real_swd", "swd_ratio_levels")    # the result's per-resolution dicts


class EvaluateError(ValueError):
    """An evaluation that cannot run (no such level, too few images); the message says what to do."""


@dataclass(frozen=True)
class Level:
    """One level of a data set as rows: how many, and a reader of given (sorted) row indices."""
    resolution: int
    total: int
    read_rows: Callable[[np.ndarray], np.ndarray]        # indices [n] -> uint8 [n, res, res, 3]


def memory_level(images: np.ndarray) -> Level:
    """A level held in memory, uint8 [N, R, R, 3] (benchmarks, tests)."""
    return Level(int(images.shape[1]), int(len(images)), lambda idx: images[np.asarray(idx)])


def stored_level(dataset_url: str, res: int, storage: StorageConfig | None = None) -> Level:
    """Level `res` of an ingested data set: its row count from the Parquet footers, rows read on demand."""
    total, _ = count_rows(dataset_url, res, storage)
    return Level(int(res), int(total), lambda idx: read_level_rows(dataset_url, res, idx, storage))


def by_resolution(levels: Mapping[Any, float]) -> dict[str, float]:
    """A per-level dict with JSON keys: {32: x} or {"32": x} -> {"32": x}."""
    return {str(int(k)): float(v) for k, v in levels.items()}


def format_levels(levels: Mapping[Any, float], digits: int = 1) -> str:
    """{"32": 41.23, "16": 30.1} -> '{32: 41.2, 16: 30.1}' (for console lines)."""
    return "{" + ", ".join(f"{int(k)}: {float(v):.{digits}f}" for k, v in levels.items()) + "}"


def usable_size(level: Level, num_images: int) -> int:
    """Images per set for this level: eval_size, refused below 2 (SWD and MS-SSIM compare at least 2)."""
    n = eval_size(level.total, num_images)
    if n < 2:
        raise EvaluateError(f"level {level.resolution} has {level.total} image(s): an evaluation needs at least 4 "
                            "(two disjoint real halves of 2 for the real-vs-real reference); ingest more images")
    return n


# ----------------------------------------------------------------------------------------------------------------
# The real-vs-real reference.

def compute_reference(level: Level, n: int, seed: int) -> dict[str, Any]:
    """The level's real-vs-real SWD of two disjoint random halves of n images each (SWD seed `seed`):
    {"resolution", "num_images", "seed", "level_size", "swd": {"32": ..}, "swd_avg"}."""
    first, second = reference_split(level.total, n, level.resolution, seed)
    ref = real_vs_real_swd(level.read_rows(first), level.read_rows(second), seed)   # 2 x uint8 [n, R, R, 3]
    return {"resolution": level.resolution, "num_images": int(n), "seed": int(seed), "level_size": level.total,
            "swd": by_resolution(ref["swd"]), "swd_avg": ref["swd_avg"]}


def reference_url(dataset_url: str, res: int, n: int, seed: int) -> str:
    """Where a stored data set keeps its reference: {dataset}/swd_reference/r0032-n256-s0.json."""
    return st.join(dataset_url, REFERENCE_DIR, f"{level_name(res)}-n{int(n)}-s{int(seed)}.json")


def matches(reference: Mapping[str, Any] | None, level: Level, n: int, seed: int) -> bool:
    """Whether a reference was made for this level (resolution and size), n and seed."""
    return reference is not None and all(reference.get(k) == v for k, v in (
        ("resolution", level.resolution), ("num_images", n), ("seed", seed), ("level_size", level.total)))


def stored_reference(dataset_url: str, level: Level, n: int, seed: int,
                     storage: StorageConfig | None = None) -> dict[str, Any]:
    """The reference kept beside the data set's manifest, computed and written (atomically) when it is missing or
    was made for another version of the level."""
    url = reference_url(dataset_url, level.resolution, n, seed)
    found = st.read_json(url, storage)
    if matches(found, level, n, seed):
        return found
    reference = compute_reference(level, n, seed)
    st.write_json_atomic(url, reference, storage)
    return reference


# ----------------------------------------------------------------------------------------------------------------
# The evaluation.

def fake_images(G: torch.nn.Module, n: int, res: int, seed: int) -> np.ndarray:
    """n images of G from the seed's fixed latents, box-downsampled to `res` as ingest makes the lower levels:
    uint8 [n, res, res, 3]. G runs on whatever device it is on. A StyleGAN G's noise is random (the distribution
    it was trained to match), drawn from the seed so that the score is reproducible."""
    noise = "random" if is_style_generator(G) else None
    fakes = generate_images(G, n, seed, noise_mode=noise)                        # uint8 [n, R, R, 3]
    if fakes.shape[1] > res:
        fakes = np.stack([box_pyramid(f, min_res=res)[res] for f in fakes])     # uint8 [n, res, res, 3]
    return fakes


def evaluate_generator(G: torch.nn.Module, level: Level, num_images: int, seed: int,
                       reference: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """G against `level`: n = eval_size(level rows, num_images) random reals and n fakes (seed `seed` for the
    sample, the latents and SWD). `reference` (compute_reference / stored_reference of the same n and seed) is
    computed here when not given. Returns
    {"resolution", "swd": {"32": ..}, "swd_avg", "ms_ssim", "real_swd": {..}, "real_swd_avg", "swd_ratio",
     "swd_ratio_levels": {..}, "num_reals", "num_fakes", "level_size", "seed"} (SWD x1e3)."""
    res = level.resolution
    if res > G.resolution:
        raise EvaluateError(f"resolution {res}: the generator makes {G.resolution}x{G.resolution} images; compare "
                            f"at {G.resolution} or below")
    n = usable_size(level, num_images)
    if reference is None:
        reference = compute_reference(level, n, seed)
    elif not matches(reference, level, n, seed):
        made = {k: reference.get(k) for k in ("resolution", "num_images", "seed", "level_size")}
        raise ValueError(f"the reference was made for {made}, not resolution {res}, {n} images, seed {seed}, "
                         f"level size {level.total}: pass compute_reference(level, {n}, {seed})")
    reals = level.read_rows(eval_indices(level.total, n, res, seed))            # uint8 [n, res, res, 3]
    fakes = fake_images(G, n, res, seed)                                         # uint8 [n, res, res, 3]
    metrics = evaluate_images(reals, fakes, seed=seed)
    swd = by_resolution(swd_by_resolution(metrics["swd_levels"], res))
    real = reference["swd"]
    return {"resolution": res, "swd": swd, "swd_avg": float(metrics["swd_avg"]), "ms_ssim": float(metrics["ms_ssim"]),
            "real_swd": dict(real), "real_swd_avg": float(reference["swd_avg"]),
            "swd_ratio": swd_ratio(metrics["swd_avg"], reference["swd_avg"]),
            "swd_ratio_levels": swd_ratio_levels(swd, real),
            "num_reals": int(len(reals)), "num_fakes": int(len(fakes)), "level_size": level.total, "seed": int(seed)}


def evaluate_dataset(G: torch.nn.Module, dataset_url: str, res: int, num_images: int, seed: int,
                     storage: StorageConfig | None = None) -> dict[str, Any]:
    """evaluate_generator against level `res` of an ingested data set, with its stored reference."""
    level = stored_level(dataset_url, res, storage)
    n = usable_size(level, num_images)
    return evaluate_generator(G, level, num_images, seed, stored_reference(dataset_url, level, n, seed, storage))


def summary_line(result: Mapping[str, Any]) -> str:
    """'SWD x1e3 {32: 41.2, 16: 30.1} (real-vs-real {32: 12.0, 16: 9.8}) ratio 3.4, MS-SSIM 0.21, 256 vs 256 images'
    (and the per-class metrics of a conditional run)."""
    per_class = class_summary(result)
    return (f"SWD x1e3 {format_levels(result['swd'])} (real-vs-real {format_levels(result['real_swd'])}) ratio "
            f"{result['swd_ratio']:.2f}, MS-SSIM {result['ms_ssim']:.3f}, {result['num_fakes']} fakes vs "
            f"{result['num_reals']} reals (seed {result['seed']})" + (f"; {per_class}" if per_class else ""))


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints and registered models against a stored data set (the stage end, `pggan evaluate`).

def on_gpu_if_any(G: torch.nn.Module) -> torch.nn.Module:
    """G on the GPU when this process has one (full_run asks for a GPU task with use_gpu), else as it is."""
    return G.cuda() if torch.cuda.is_available() else G


def evaluate_checkpoint(checkpoint_url: str, dataset_url: str, res: int, num_images: int, seed: int,
                        storage: StorageConfig | None = None) -> dict[str, Any]:
    """evaluate_dataset of a stage checkpoint's EMA generator (it must be at `res`), on the GPU when there is one.
    A conditional generator's fakes take the classes in turn; its result adds the per-class metrics
    (pggan.class_eval: each class's SWD against its own reals, the SWD matrix, D's auxiliary-head accuracy)."""
    state = ckpt_io.load_checkpoint(checkpoint_url, storage)
    if state["resolution"] != res:
        raise ValueError(f"checkpoint {checkpoint_url} is at {state['resolution']}x{state['resolution']}, "
                         f"not {res}x{res}; pass the matching --res/dataset level")
    G = on_gpu_if_any(ckpt_io.build_generator(state))
    result = evaluate_dataset(G, dataset_url, res, num_images, seed, storage)
    if getattr(G, "num_classes", 0):
        D = on_gpu_if_any(ckpt_io.build_discriminator(state))
        result.update(evaluate_classes(G, D, dataset_url, res, num_images, seed, storage))
    return result


def sample_grid(checkpoint_url: str, grid_size: int, seed: int, storage: StorageConfig | None = None) -> np.ndarray:
    """A grid_size x grid_size uint8 HWC grid from fixed latents (the same at every stage for a given seed), tiles
    enlarged to at least 64 px (imaging.sample_grid_image) so that 4x4 and 8x8 samples can be looked at. A
    conditional generator's grid has one row of grid_size images per class instead."""
    state = ckpt_io.load_checkpoint(checkpoint_url, storage)
    G = on_gpu_if_any(ckpt_io.build_generator(state))
    if getattr(G, "num_classes", 0):
        labels = per_class_labels(G.num_classes, grid_size)                     # [K * g]
        fakes = generate_images(G, len(labels), seed, labels=labels)             # uint8 [K*g, R, R, 3]
        return sample_grid_image(fakes, cols=grid_size)
    fakes = generate_images(G, grid_size * grid_size, seed)                      # uint8 [g*g, R, R, 3]
    return sample_grid_image(fakes, cols=grid_size)


def dataset_levels(dataset_url: str, storage: StorageConfig) -> list[int]:
    """The resolutions of an ingested data set, from its manifest."""
    manifest = read_manifest(dataset_url, storage)
    if manifest is None:
        raise EvaluateError(f"--dataset {dataset_url}: no {MANIFEST}, so not an ingested data set (or its ingest "
                            "was interrupted); pass {root}/datasets/NAME, or run `pggan ingest` to build it")
    return [int(r) for r in manifest["resolutions"]]


def evaluate_model(model: str, dataset: str, cfg: PipelineConfig, num_images: int | None = None,
                   seed: int | None = None, resolution: int | None = None,
                   tracking_uri: str | None = None) -> dict[str, Any]:
    """`pggan evaluate`: the metrics of `model`'s generator (models:/ or runs:/ URI, or a checkpoint) against the
    level of `dataset` at its resolution (or `resolution`); num_images and seed default to the config's eval.*.
    The evaluate_dataset result with "model" and "dataset" added. Errors name the command's option to change."""
    num_images = cfg.eval.num_images if num_images is None else num_images
    if num_images < 2:
        raise EvaluateError(f"--num-images {num_images}: the metrics compare at least 2 images; the paper "
                            "uses 16384 for SWD (try 1000)")
    seed = cfg.eval.seed if seed is None else seed
    dataset = st.to_url(dataset)
    levels = dataset_levels(dataset, cfg.storage)
    G = load_generator(model, cfg.storage, tracking_uri_for(model, tracking_uri, cfg))
    res = resolution or G.resolution
    if res not in levels:
        raise EvaluateError(f"--dataset {dataset} has no {res}x{res} level ({level_name(res)}); its levels are "
                            f"{', '.join(level_name(r) for r in levels)}. Ingest the data at {res} or more, or "
                            "pass --resolution with one of those levels")
    G = on_gpu_if_any(G)
    metrics = evaluate_dataset(G, dataset, res, num_images, seed, cfg.storage)
    if getattr(G, "num_classes", 0):                  # per class, without D (a registered model holds only G)
        metrics.update(evaluate_classes(G, None, dataset, res, num_images, seed, cfg.storage))
    return {**metrics, "model": model, "dataset": dataset}
