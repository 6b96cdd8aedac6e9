"""The per-class stage-end evaluation of a conditional generator (AC-GAN): for each class, the SWD of that class's
generated images against that class's reals, the SWD against every other class's reals (the matrix says whether
the classes are told apart), and how often D's auxiliary head classifies G's images of that class as that class.

Per class c with n_c = min(images of class c, num_images): n_c reals of class c drawn at random (seeded) from the
level, n_c fakes of class c from the seed's fixed latents (the same latents for every class, so that only the
label differs). Results are flat and JSON-shaped, keyed by class name (MLflow metric names need no nesting):
    {"swd_class_circle": .., "aux_acc_circle": .., ..., "swd_class_matrix": {generated: {real: swd}}}
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from pggan.dataset import read_labels, read_level_rows
from pggan.imaging import box_pyramid, to_uint8
from pggan.labels import generator_classes
from pggan.metrics import evaluate_images
from pggan.nn.networks import split_d_output
from pggan.sampling import generate, sample_latents

if TYPE_CHECKING:
    from pggan.config import StorageConfig

MATRIX_KEY = "swd_class_matrix"


def metric_name(prefix: str, class_name: str) -> str:
    """'swd_class' + 'big cats' -> 'swd_class_big_cats' (MLflow metric names allow letters, digits, _ - . /)."""
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', class_name)}"


def class_rows(labels: np.ndarray, cls: int, n: int, seed: int) -> np.ndarray:
    """Up to n row indices of class `cls` in a level's label column int64 [N], drawn at random from `seed`,
    sorted (as dataset.read_level_rows wants them)."""
    rows = np.flatnonzero(np.asarray(labels) == cls)
    rng = np.random.default_rng([int(seed), int(cls)])
    return np.sort(rng.choice(rows, size=min(int(n), len(rows)), replace=False))


@torch.no_grad()
def class_fakes(G: torch.nn.Module, cls: int, n: int, seed: int) -> torch.Tensor:
    """n images of class `cls` from the seed's latents: float [n, 3, R, R] in ~[-1, 1] on the CPU."""
    z = sample_latents(n, G.model.latent_dim, seed)                              # [n, latent]
    return generate(G, z, labels=torch.full((n,), int(cls), dtype=torch.int64))


@torch.no_grad()
def aux_accuracy(D: torch.nn.Module, images: torch.Tensor, cls: int, batch: int = 64) -> float:
    """Share of `images` (float [n, 3, R, R]) that D's auxiliary head classifies as class `cls`."""
    device = next(D.parameters()).device
    hits = 0
    for i in range(0, len(images), batch):
        _, logits = split_d_output(D(images[i:i + batch].to(device), 1.0))      # [b, K]
        hits += int((logits.argmax(dim=1) == cls).sum())
    return hits / max(len(images), 1)


def swd_matrix(fakes: Mapping[str, np.ndarray], reals: Mapping[str, np.ndarray], seed: int
               ) -> dict[str, dict[str, float]]:
    """{generated class: {real class: SWD x1e3 average}}: each class's fakes against every class's reals, on as
    many images as the smaller set has."""
    out: dict[str, dict[str, float]] = {}
    for g, f in fakes.items():
        out[g] = {}
        for r, x in reals.items():
            n = min(len(f), len(x))
            out[g][r] = float(evaluate_images(x[:n], f[:n], seed=seed, metrics=["swd"])["swd_avg"])
    return out


def evaluate_classes(G: torch.nn.Module, D: torch.nn.Module | None, dataset_url: str, res: int, num_images: int,
                     seed: int, storage: StorageConfig | None = None) -> dict[str, Any]:
    """The per-class metrics of a conditional G (and its D, for the auxiliary-head accuracy; None skips it)
    against level `res` of the data set; {} for an unconditional G."""
    names = generator_classes(G)
    if not names:
        return {}
    labels = read_labels(dataset_url, res, storage)                             # int64 [N]
    reals, fakes, out = {}, {}, {}
    for c, name in enumerate(names):
        rows = class_rows(labels, c, num_images, seed)
        if len(rows) < 2:
            continue                                                             # SWD compares at least 2
        reals[name] = read_level_rows(dataset_url, res, rows, storage)           # uint8 [n_c, res, res, 3]
        images = class_fakes(G, c, len(rows), seed)                              # [n_c, 3, R, R]
        fakes[name] = _at(to_uint8(images), res)                                 # uint8 [n_c, res, res, 3]
        if D is not None and images.shape[-1] == res:
            out[metric_name("aux_acc", name)] = aux_accuracy(D, images, c)
    matrix = swd_matrix(fakes, reals, seed)
    out.update({metric_name("swd_class", name): row[name] for name, row in matrix.items()})
    out[MATRIX_KEY] = matrix
    return out


def _at(images: np.ndarray, res: int) -> np.ndarray:
    """uint8 [n, R, R, 3] box-downsampled to res (as ingest makes the lower levels)."""
    if images.shape[1] <= res:
        return images
    return np.stack([box_pyramid(f, min_res=res)[res] for f in images])


def class_summary(result: Mapping[str, Any], names: Sequence[str] | None = None) -> str:
    """'per class SWD x1e3 / D aux accuracy: circle 12.3 / 0.91, square ...' ('' for an unconditional run)."""
    matrix = result.get(MATRIX_KEY) or {}
    if not matrix:
        return ""
    parts = []
    for name in names or list(matrix):
        acc = result.get(metric_name("aux_acc", name))
        parts.append(f"{name} {matrix[name][name]:.1f}" + (f" / {acc:.2f}" if acc is not None else ""))
    return "per class SWD x1e3 / D aux accuracy: " + ", ".join(parts)
