"""Quality per minute from a run's evaluations: when a run first reached an SWD ratio, its best ratio, and how two
runs compare (e.g. direct training against progressive growing) at the thresholds both reached.

A point is one evaluation during training: {"resolution": int, "swd_ratio": float, "seconds": training wall
seconds so far (evaluation excluded), "nimg": images seen so far}. Only points at the run's final resolution count:
a low ratio at 8x8 says nothing about 32x32 samples.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

THRESHOLDS = (2.0, 1.5)          # SWD ratios worth naming: within 2x and 1.5x of two real samples' own SWD


def at_resolution(points: Iterable[Mapping[str, Any]], resolution: int) -> list[Mapping[str, Any]]:
    """The points evaluated at `resolution`, in order, skipping non-finite ratios (an untrained G can give inf)."""
    return [p for p in points if int(p["resolution"]) == int(resolution) and math.isfinite(float(p["swd_ratio"]))]


def first_reaching(points: Iterable[Mapping[str, Any]], resolution: int, threshold: float) -> dict[str, Any] | None:
    """The first point at `resolution` with swd_ratio <= threshold, as {"seconds", "nimg", "swd_ratio"}; None if
    the run never got there."""
    for p in at_resolution(points, resolution):
        if float(p["swd_ratio"]) <= threshold:
            return {"seconds": float(p["seconds"]), "nimg": int(p["nimg"]), "swd_ratio": float(p["swd_ratio"])}
    return None


def quality_summary(points: Sequence[Mapping[str, Any]], resolution: int,
                    thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
    """{"resolution", "best": {"swd_ratio", "seconds", "nimg"} | None, "reached": {threshold: point | None},
    "evaluations": count} over the points at `resolution`."""
    final = at_resolution(points, resolution)
    best = min(final, key=lambda p: float(p["swd_ratio"]), default=None)
    return {
        "resolution": int(resolution),
        "best": None if best is None else {"swd_ratio": float(best["swd_ratio"]), "seconds": float(best["seconds"]),
                                           "nimg": int(best["nimg"])},
        "reached": {float(t): first_reaching(final, resolution, t) for t in thresholds},
        "evaluations": len(final),
    }


def compare_summaries(baseline: Mapping[str, Any], other: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per threshold of `baseline`'s summary: where both runs reached it, the ratios other/baseline of training
    seconds and of images to get there ("time_ratio" > 1: other is slower); otherwise each run's best ratio, so a
    threshold only one run reached still reads as a result."""
    rows = []
    for threshold, mine in baseline["reached"].items():
        theirs = other["reached"].get(threshold)
        row: dict[str, Any] = {"threshold": float(threshold), "baseline": mine, "other": theirs}
        if mine is not None and theirs is not None:
            row["time_ratio"] = theirs["seconds"] / mine["seconds"] if mine["seconds"] > 0 else math.inf
            row["nimg_ratio"] = theirs["nimg"] / mine["nimg"] if mine["nimg"] > 0 else math.inf
        else:
            row["baseline_best"] = None if baseline["best"] is None else baseline["best"]["swd_ratio"]
            row["other_best"] = None if other["best"] is None else other["best"]["swd_ratio"]
        rows.append(row)
    return rows


def common_level(baseline: Sequence[Mapping[str, Any]], other: Sequence[Mapping[str, Any]],
                 resolution: int) -> dict[str, Any] | None:
    """Where neither run reached the named thresholds, the closest both did: the worse of the two best ratios at
    `resolution`, with the first point of each run at or below it and the ratios other/baseline of seconds and
    images to get there. None when a run has no point at `resolution`."""
    a, b = quality_summary(baseline, resolution, ()), quality_summary(other, resolution, ())
    if a["best"] is None or b["best"] is None:
        return None
    level = max(a["best"]["swd_ratio"], b["best"]["swd_ratio"])
    mine, theirs = first_reaching(baseline, resolution, level), first_reaching(other, resolution, level)
    assert mine is not None and theirs is not None          # each run's best is at or below the worse best
    return {"threshold": level, "baseline": mine, "other": theirs,
            "time_ratio": theirs["seconds"] / mine["seconds"] if mine["seconds"] > 0 else math.inf,
            "nimg_ratio": theirs["nimg"] / mine["nimg"] if mine["nimg"] > 0 else math.inf}
