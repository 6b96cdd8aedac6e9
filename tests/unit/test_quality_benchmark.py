"""benchmarks/quality.py as a user runs it: a few ticks at 8x8 on the built-in set, each printed with its fields."""
from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_quality_benchmark_prints_time_images_schedule_and_swd_ratio_per_tick(tmp_path):
    log = tmp_path / "ticks.jsonl"
    cmd = [sys.executable, "benchmarks/quality.py", "--config", "tiny.yaml", "--threads", "1",
           "--set", "data.synthetic_count=64", "--set", "schedule.fade_kimg=0.1",
           "--set", "schedule.stabilize_kimg=0.1",
           "--tick-kimg", "0.05", "--eval-images", "16", "--minutes", "5", "--json", str(log)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": REPO})
    assert out.returncode == 0, out.stderr[-2000:]
    ticks = [r for r in map(json.loads, log.read_text().splitlines()) if r.get("arm") and "phase" in r]
    # 4x4 stabilize (0.1 kimg), then 8x8 fade-in and stabilize (0.1 kimg each): ticks every 0.05 kimg or so.
    assert [t["resolution"] for t in ticks] == sorted(t["resolution"] for t in ticks)
    assert {t["resolution"] for t in ticks} == {4, 8} and len(ticks) >= 5
    fading = [t for t in ticks if t["phase"] == "fade"]
    assert fading and all(t["resolution"] == 8 and t["alpha"] < 1.0 for t in fading)
    assert (ticks[-1]["phase"], ticks[-1]["alpha"]) == ("stabilize", 1.0)
    assert [t["nimg"] for t in ticks] == sorted(set(t["nimg"] for t in ticks)) and ticks[-1]["nimg"] >= 300
    assert [t["seconds"] for t in ticks] == sorted(t["seconds"] for t in ticks)
    assert all(t["seconds"] > 0 and t["eval_s"] > 0 and t["swd_ratio"] > 0 for t in ticks)
    lines = [line for line in out.stdout.splitlines() if line.startswith("[base]")]
    assert len(lines) == len(ticks)
    for field in ("train", "eval", "kimg", "8x8", "fade", "alpha", "swd_ratio"):
        assert field in "\n".join(lines), field
    summary = [line for line in out.stdout.splitlines() if line.startswith("== base")]
    assert summary and "at 8x8" in summary[0] and "best" in summary[0], out.stdout
