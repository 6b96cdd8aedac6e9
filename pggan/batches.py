"""Endless minibatches of real images (uint8 [n, R, R, 3]) for the step: from a level held in memory (the Ray-free
loop, pggan.progressive) or from a stream that is cached and reshuffled once it fits (the Ray stage)."""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np
import torch


def minibatches(images: np.ndarray, batch: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless shuffled minibatches uint8 [batch, R, R, 3] from a level in memory (every image once per epoch)."""
    if len(images) < batch:
        raise ValueError(f"a level of {len(images)} images cannot fill a minibatch of {batch}")
    pool = torch.from_numpy(np.ascontiguousarray(images))       # [N, R, R, 3]
    gen = torch.Generator().manual_seed(int(seed))
    while True:
        order = torch.randperm(len(pool), generator=gen)
        for i in range(0, len(pool) - batch + 1, batch):
            yield pool[order[i:i + batch]]


def cycle_batches(first_epoch: Iterable[torch.Tensor], next_epoch: Callable[[], Iterable[torch.Tensor]],
                  batch: int, cache_bytes: int) -> Iterator[torch.Tensor]:
    """Endless minibatches: the first epoch as it streams in; later epochs reshuffled from memory when this
    rank's share fits in `cache_bytes`, else streamed again (next_epoch()) epoch after epoch.

    Small levels would otherwise pay a data-pipeline restart per epoch (seconds on a busy machine, for an epoch
    of a few steps); large levels are never held in memory. The cache lives where the batches arrive (a GPU's
    memory when they come on the GPU): `cache_bytes` held, twice that while the pool is joined.
    """
    cache: list[torch.Tensor] | None = []
    size = 0
    for images in first_epoch:                                  # [n, R, R, 3] uint8
        if cache is not None:
            size += images.numel() * images.element_size()
            cache = cache + [images] if size <= cache_bytes else None
        yield images
    if cache == []:
        raise RuntimeError("the training data yielded no complete minibatch: this worker's share of the data set "
                           "is smaller than one per-worker batch; ingest more images or lower schedule.batch_size")
    if cache is None:
        while True:
            yield from next_epoch()
    pool, cache = torch.cat(cache), None                        # [M, R, R, 3]; the batches freed
    while True:
        order = torch.randperm(len(pool), device=pool.device)
        for i in range(0, len(pool) - batch + 1, batch):
            yield pool[order[i:i + batch]]
