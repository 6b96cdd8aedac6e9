"""Image-quality metrics (SWD, MS-SSIM) and the registry the pipeline evaluates them through."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

# Note: the function `ms_ssim` shadows the submodule of the same name on this package; import the submodule's
# other names with `from pggan.metrics.ms_ssim import ...`.
from pggan.metrics.ms_ssim import ms_ssim
from pggan.metrics.swd import sliced_wasserstein

# A metric maps (reals, fakes, seed) -> flat dict of results; reals and fakes are uint8 [N, H, W, 3].
MetricFn = Callable[..., dict[str, Any]]

METRICS: dict[str, MetricFn] = {}


def register_metric(name: str, fn: MetricFn) -> MetricFn:
    """Add `fn(reals, fakes, *, seed) -> dict` to METRICS under `name`; returns `fn`."""
    if name in METRICS:
        raise ValueError(f"metric {name!r} is already registered (as {METRICS[name].__name__}); pick another name.")
    METRICS[name] = fn
    return fn


def list_metrics() -> list[str]:
    """Names of the registered metrics, in registration order."""
    return list(METRICS)


def _swd(reals: np.ndarray, fakes: np.ndarray, *, seed: int = 0) -> dict[str, Any]:
    """SWD x 1e3 per Laplacian level between reals and fakes, and its average."""
    result = sliced_wasserstein(reals, fakes, seed=seed)
    return {"swd_levels": result["levels"], "swd_avg": result["avg"]}


def _ms_ssim(reals: np.ndarray, fakes: np.ndarray, *, seed: int = 0) -> dict[str, Any]:
    """MS-SSIM between consecutive pairs of fakes (diversity of the generator); reals and seed are unused."""
    del reals, seed
    return {"ms_ssim": ms_ssim(fakes)}


register_metric("swd", _swd)
register_metric("ms_ssim", _ms_ssim)


def evaluate_images(
    reals_uint8: np.ndarray, fakes_uint8: np.ndarray, seed: int = 0, metrics: Iterable[str] | None = None
) -> dict[str, Any]:
    """Run the named metrics (default: all registered) and merge their results.

    With the built-in registry: {"swd_levels": [...], "swd_avg": float, "ms_ssim": float}.
    """
    names = list(METRICS) if metrics is None else list(metrics)
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; registered metrics are {list_metrics()}.")
    results: dict[str, Any] = {}
    for name in names:
        results.update(METRICS[name](reals_uint8, fakes_uint8, seed=seed))
    return results


__all__ = [
    "METRICS",
    "MetricFn",
    "evaluate_images",
    "list_metrics",
    "ms_ssim",
    "register_metric",
    "sliced_wasserstein",
]
