"""Quality per minute from a run's evaluations: first time below a ratio, best ratio, progressive vs direct."""
from __future__ import annotations

import math

import pytest

from pggan.metrics.progress import common_level, compare_summaries, first_reaching, quality_summary


def point(res: int, ratio: float, seconds: float, nimg: int) -> dict:
    return {"resolution": res, "swd_ratio": ratio, "seconds": seconds, "nimg": nimg}


RUN = [point(16, 1.2, 10, 1000),                 # a low ratio at a lower resolution must not count
       point(32, math.inf, 20, 2000),            # an untrained G can give inf: skipped
       point(32, 2.5, 30, 3000), point(32, 1.9, 40, 4000), point(32, 2.1, 50, 5000), point(32, 1.4, 60, 6000)]


def test_first_reaching_is_the_first_evaluation_at_the_final_resolution_at_or_below_the_threshold():
    assert first_reaching(RUN, 32, 2.0) == {"seconds": 40.0, "nimg": 4000, "swd_ratio": 1.9}
    assert first_reaching(RUN, 32, 1.5) == {"seconds": 60.0, "nimg": 6000, "swd_ratio": 1.4}
    assert first_reaching(RUN, 32, 1.9) == {"seconds": 40.0, "nimg": 4000, "swd_ratio": 1.9}   # <=, not <
    assert first_reaching(RUN, 32, 1.0) is None


def test_summary_gives_the_best_ratio_and_each_threshold_at_the_final_resolution_only():
    s = quality_summary(RUN, 32, thresholds=(2.0, 1.5, 1.0))
    assert s["best"] == {"swd_ratio": 1.4, "seconds": 60.0, "nimg": 6000}
    assert s["reached"][2.0]["seconds"] == 40.0 and s["reached"][1.0] is None
    assert s["evaluations"] == 4
    never = quality_summary(RUN[:1], 32)
    assert never["best"] is None and all(r is None for r in never["reached"].values())


def test_comparison_gives_time_and_image_ratios_where_both_reached_else_the_best_ratios():
    progressive = quality_summary(RUN, 32)
    direct = quality_summary([point(32, 3.0, 20, 1000), point(32, 1.8, 100, 5000)], 32)
    rows = {r["threshold"]: r for r in compare_summaries(progressive, direct)}
    assert rows[2.0]["time_ratio"] == pytest.approx(100 / 40)          # direct slower: > 1
    assert rows[2.0]["nimg_ratio"] == pytest.approx(5000 / 4000)
    assert "time_ratio" not in rows[1.5]
    assert (rows[1.5]["baseline_best"], rows[1.5]["other_best"]) == (1.4, 1.8)


def test_common_level_compares_the_time_to_the_best_ratio_the_worse_run_reached():
    direct = [point(32, 7.0, 100, 2000), point(32, 6.0, 300, 6000), point(32, 6.5, 400, 8000)]
    grown = [point(16, 1.5, 50, 4000), point(32, 6.8, 120, 5000), point(32, 5.0, 150, 6000)]
    row = common_level(grown, direct, 32)
    assert row["threshold"] == 6.0                                      # direct's best; grown got below it first
    assert row["baseline"]["seconds"] == 150.0                          # 6.8 > 6.0: the 5.0 point is the first
    assert row["time_ratio"] == pytest.approx(300 / 150)
    assert row["nimg_ratio"] == pytest.approx(6000 / 6000)
    assert common_level(grown[:1], direct, 32) is None                   # never reached 32x32: no comparison
