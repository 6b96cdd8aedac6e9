"""The metric registry: evaluate_images runs every registered metric and returns the pipeline's flat dict."""

from __future__ import annotations

import numpy as np
import pytest

from pggan import metrics
from pggan.metrics import METRICS, evaluate_images, list_metrics, register_metric


def _images(seed: int, count: int = 4, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def test_built_in_metrics_are_registered() -> None:
    assert list_metrics()[:2] == ["swd", "ms_ssim"]
    assert set(METRICS) >= {"swd", "ms_ssim"}


@pytest.mark.parametrize("size", [4, 8, 32])
def test_evaluate_images_returns_swd_levels_average_and_ms_ssim(size: int) -> None:
    reals, fakes = _images(0, size=size), _images(1, size=size)
    result = evaluate_images(reals, fakes, seed=2, metrics=["swd", "ms_ssim"])
    assert set(result) == {"swd_levels", "swd_avg", "ms_ssim"}
    assert result["swd_levels"] == metrics.sliced_wasserstein(reals, fakes, seed=2)["levels"]
    assert result["swd_avg"] == pytest.approx(np.mean(result["swd_levels"]))
    assert result["ms_ssim"] == metrics.ms_ssim(fakes)  # diversity of the fakes only
    assert all(isinstance(v, float) for v in result["swd_levels"] + [result["swd_avg"], result["ms_ssim"]])


def test_registered_metric_joins_evaluate_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "METRICS", dict(METRICS))  # keep the module's registry as it was

    def mean_gap(reals: np.ndarray, fakes: np.ndarray, *, seed: int = 0) -> dict:
        return {"mean_gap": float(reals.mean() - fakes.mean())}

    register_metric("mean_gap", mean_gap)
    assert "mean_gap" in list_metrics()
    result = evaluate_images(_images(0), _images(0))
    assert result["mean_gap"] == 0.0 and result["swd_avg"] == pytest.approx(0.0)


def test_duplicate_or_unknown_metric_names_raise() -> None:
    with pytest.raises(ValueError, match="'swd' is already registered"):
        register_metric("swd", lambda reals, fakes, *, seed=0: {})
    with pytest.raises(ValueError, match=r"unknown metrics \['fid'\]"):
        evaluate_images(_images(0), _images(1), metrics=["fid"])
