"""Seconds and peak RSS of SWD and MS-SSIM on synthetic images; one JSON line per case, each in a fresh process."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

# (metric, images, side): SWD at 2048 and 8192 images, MS-SSIM on 1000 pairs; all at 64x64.
DEFAULT_CASES = (("swd", 2048, 64), ("swd", 8192, 64), ("ms_ssim", 2000, 64))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _images(seed: int, count: int, size: int) -> np.ndarray:
    """The demo data set's procedural images (gradients and shapes), uint8 [count, size, size, 3]."""
    from pggan.synthetic import image_rng, synthetic_image

    return np.stack([synthetic_image(image_rng(seed, i), size) for i in range(count)])


def run_case(metric: str, count: int, size: int) -> dict:
    """Time one metric call in this process; peak RSS covers the inputs plus the metric's own memory."""
    from pggan.metrics import ms_ssim, sliced_wasserstein

    reals, fakes = _images(0, count, size), _images(1, count, size)
    rss_before, cpu_before = _peak_rss_mb(), _cpu_seconds()
    start = time.perf_counter()
    if metric == "swd":
        result = sliced_wasserstein(reals, fakes, seed=0)
        values = {"swd_levels": [round(v, 3) for v in result["levels"]], "swd_avg": round(result["avg"], 3)}
    else:
        values = {"ms_ssim": round(ms_ssim(fakes), 5), "pairs": count // 2}
    seconds = time.perf_counter() - start
    return {
        "benchmark": f"metrics.{metric}",
        "images": count,
        "resolution": size,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(_cpu_seconds() - cpu_before, 2),  # all threads; less sensitive to a busy machine
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "cpus": os.cpu_count(),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_before_call_mb": round(rss_before, 1),
        "input_mb": round(2 * reals.nbytes / 2**20, 1),
        **values,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", nargs=3, metavar=("METRIC", "IMAGES", "SIDE"), help="run one case in this process")
    args = parser.parse_args()
    if args.case:
        metric, count, size = args.case[0], int(args.case[1]), int(args.case[2])
        if metric not in ("swd", "ms_ssim"):
            parser.error(f"METRIC must be swd or ms_ssim; got {metric!r}")
        print(json.dumps(run_case(metric, count, size)), flush=True)
        return
    for metric, count, size in DEFAULT_CASES:  # a fresh process per case, so each peak RSS is its own
        subprocess.run([sys.executable, __file__, "--case", metric, str(count), str(size)], check=True)


if __name__ == "__main__":
    main()
