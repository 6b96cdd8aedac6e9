"""Endless minibatches of real images (uint8 [n, R, R, 3]) for the step: from a level held in memory (the Ray-free
loop, pggan.progressive) or from a stream that is cached and reshuffled once it fits (the Ray stage). A conditional
run's batches are (images, labels int64 [n]) pairs, kept together through the cache and the reshuffles."""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Union

import numpy as np
import torch

Batch = Union[torch.Tensor, tuple[torch.Tensor, ...]]   # images [n, R, R, 3], or (images, labels [n], ...)


def minibatches(images: np.ndarray, batch: int, seed: int, labels: np.ndarray | None = None) -> Iterator[Batch]:
    """Endless shuffled minibatches uint8 [batch, R, R, 3] from a level in memory (every image once per epoch);
    with `labels` int64 [N], (images, labels [batch]) pairs."""
    if len(images) < batch:
        raise ValueError(f"a level of {len(images)} images cannot fill a minibatch of {batch}")
    pool = torch.from_numpy(np.ascontiguousarray(images))       # [N, R, R, 3]
    classes = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.int64)   # [N]
    gen = torch.Generator().manual_seed(int(seed))
    while True:
        order = torch.randperm(len(pool), generator=gen)
        for i in range(0, len(pool) - batch + 1, batch):
            rows = order[i:i + batch]
            yield pool[rows] if classes is None else (pool[rows], classes[rows])


def _parts(item: Batch) -> tuple[torch.Tensor, ...]:
    return item if isinstance(item, tuple) else (item,)


def cycle_batches(first_epoch: Iterable[Batch], next_epoch: Callable[[], Iterable[Batch]],
                  batch: int, cache_bytes: int) -> Iterator[Batch]:
    """Endless minibatches: the first epoch as it streams in; later epochs reshuffled from memory when this
    rank's share fits in `cache_bytes`, else streamed again (next_epoch()) epoch after epoch.

    Small levels would otherwise pay a data-pipeline restart per epoch (seconds on a busy machine, for an epoch
    of a few steps); large levels are never held in memory. The cache lives where the batches arrive (a GPU's
    memory when they come on the GPU): `cache_bytes` held, twice that while the pool is joined. A batch may be a
    tuple of tensors sharing their first dimension (images and labels): the cache keeps the rows together.
    """
    cache: list[Batch] | None = []
    size = 0
    for item in first_epoch:                                    # [n, R, R, 3] uint8 (and labels [n])
        if cache is not None:
            size += sum(t.numel() * t.element_size() for t in _parts(item))
            cache = cache + [item] if size <= cache_bytes else None
        yield item
    if cache == []:
        raise RuntimeError("the training data yielded no complete minibatch: this worker's share of the data set "
                           "is smaller than one per-worker batch; ingest more images or lower schedule.batch_size")
    if cache is None:
        while True:
            yield from next_epoch()
    paired = isinstance(cache[0], tuple)
    pools, cache = [torch.cat(c) for c in zip(*map(_parts, cache))], None   # [M, R, R, 3] (, [M]); batches freed
    while True:
        order = torch.randperm(len(pools[0]), device=pools[0].device)
        for i in range(0, len(pools[0]) - batch + 1, batch):
            rows = order[i:i + batch]
            yield tuple(p[rows] for p in pools) if paired else pools[0][rows]
