"""Images/s and peak memory of ingest (Ray Data) against a plain single-process loop, 256x256 JPEGs on a local S3.

    python benchmarks/ingest.py [--counts 2000 8000] [--resolution 64] [--num-cpus 4] [--loop-counts 2000]

Both paths list s3://bench/src-N on a moto S3 server (a subprocess on loopback), decode + centre-crop + resize to
the resolution with pggan.imaging, build the 2x2 box pyramid and write one Parquet data set per level back to
the same S3 server. Memory: the loop's own peak RSS; for Ray, sampled every 0.2 s: the driver's RSS, and over
the Ray worker processes (ray::* / default_worker) the sum of RSS (counts shared object-store pages once per
process that maps them), the sum of PSS (shared pages split between processes), the PSS sum over busy workers
(not ray::IDLE) and the largest single worker RSS; each the max over time.
Each case runs in a fresh process (the loop: one per count). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]

from pggan import storage as st  # noqa: E402
from pggan.config import config_from_dict  # noqa: E402
from pggan.imaging import ImageDecodeError, decode_pyramid  # noqa: E402
from pggan.synthetic import image_rng, synthetic_image  # noqa: E402
from s3server import start_moto, stop_moto  # noqa: E402

MB = 1 << 20


def make_jpegs(count: int, size: int, seed: int) -> list[bytes]:
    """`count` distinct JPEGs: 32 procedural images, each copy with its own pixel noise."""
    bases = [synthetic_image(image_rng(seed, i), size).astype(np.int16) for i in range(32)]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        img = np.clip(bases[i % 32] + rng.integers(-6, 7, bases[0].shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def upload(url: str, blobs: list[bytes]) -> None:
    fs, path = st.fsspec_filesystem(url)
    fs.pipe({f"{path}/img{i:06d}.jpg": b for i, b in enumerate(blobs)})


class MemorySampler:
    """Peak memory of this process and of its Ray worker processes, sampled on a thread."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.me = interval, psutil.Process()
        self.peak = {"driver_rss_mb": 0.0, "workers_rss_sum_mb": 0.0, "workers_pss_sum_mb": 0.0,
                     "busy_workers_pss_sum_mb": 0.0, "worker_rss_max_mb": 0.0, "workers_max": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _workers(self) -> list[psutil.Process]:
        procs = []
        for p in self.me.children(recursive=True):
            try:
                cmd = " ".join(p.cmdline())
                if p.name().startswith("ray::") or "default_worker.py" in cmd or cmd.startswith("ray::"):
                    procs.append(p)
            except psutil.Error:
                continue
        return procs

    def sample(self) -> None:
        rss, pss, busy, biggest, n = 0.0, 0.0, 0.0, 0.0, 0
        for p in self._workers():
            try:
                info, idle = p.memory_full_info(), p.name() == "ray::IDLE"
            except psutil.Error:
                continue
            rss, pss, n = rss + info.rss / MB, pss + info.pss / MB, n + 1
            busy += 0.0 if idle else info.pss / MB
            biggest = max(biggest, info.rss / MB)
        now = {"driver_rss_mb": self.me.memory_info().rss / MB, "workers_rss_sum_mb": rss,
               "workers_pss_sum_mb": pss, "busy_workers_pss_sum_mb": busy, "worker_rss_max_mb": biggest,
               "workers_max": n}
        self.peak = {k: max(v, now[k]) for k, v in self.peak.items()}

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = {k: round(v, 1) for k, v in self.peak.items()}


def ray_ingest(source: str, root: str, res: int, name: str) -> dict:
    from pipelines.ingest import ingest

    cfg = config_from_dict({"data": {"source": source, "resolution": res, "name": name},
                            "storage": {"root": root}})
    with MemorySampler() as mem:
        start = time.perf_counter()
        manifest = ingest(cfg, force=True, log=lambda _: None)
        seconds = time.perf_counter() - start
    return {"images": manifest["count"], "seconds": round(seconds, 2),
            "images_per_s": round(manifest["count"] / seconds, 1), **mem.peak}


def loop_ingest(source: str, out: str, res: int, flush_every: int = 256) -> dict:
    """The same work in one process: read each object, decode_pyramid, append to one Parquet writer per level."""
    start = time.perf_counter()
    fs, path = st.fsspec_filesystem(source)
    out_fs, out_path = st.pyarrow_filesystem(out)
    keys = sorted(fs.find(path))
    levels = sorted(decode_pyramid(fs.cat_file(keys[0]), res))
    schema = pa.schema([("image", pa.large_list(pa.uint8())), ("label", pa.int64()), ("key", pa.string())])
    writers = {r: pq.ParquetWriter(f"{out_path}/r{r:04d}/part-0.parquet", schema, filesystem=out_fs) for r in levels}
    pending: dict[int, list[np.ndarray]] = {r: [] for r in levels}
    pending_keys: list[str] = []

    def flush() -> None:
        for r in levels:
            flat = pa.array(np.stack(pending[r]).reshape(-1), pa.uint8())  # [n*r*r*3]
            offsets = pa.array(np.arange(len(pending[r]) + 1, dtype=np.int64) * (r * r * 3))
            images = pa.LargeListArray.from_arrays(offsets, flat)
            labels = pa.array(np.full(len(pending_keys), -1, np.int64))
            writers[r].write_table(pa.table([images, labels, pa.array(pending_keys)], schema=schema))
            pending[r].clear()
        pending_keys.clear()

    done = skipped = 0
    for key in keys:
        try:
            pyramid = decode_pyramid(fs.cat_file(key), res, min_side=res)
        except ImageDecodeError:
            skipped += 1
            continue
        for r in levels:
            pending[r].append(pyramid[r])
        pending_keys.append(key)
        done += 1
        if len(pending_keys) >= flush_every:
            flush()
    if pending_keys:
        flush()
    for w in writers.values():
        w.close()
    seconds = time.perf_counter() - start
    return {"images": done, "skipped": skipped, "seconds": round(seconds, 2),
            "images_per_s": round(done / seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # process peak


def run_case(args: argparse.Namespace) -> dict:
    """One measured case in this (fresh) process: `ray` runs every count on one Ray, `loop` one count."""
    bucket, res = "s3://bench", args.resolution
    if args.case == "loop":
        return {f"loop_{c}": loop_ingest(f"{bucket}/src-{c}", f"{bucket}/loop-{c}", res) for c in args.counts}
    import ray

    start = time.perf_counter()
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    out: dict = {"ray_init_s": round(time.perf_counter() - start, 2)}
    out["ray_warmup_64"] = ray_ingest(f"{bucket}/src-64", f"{bucket}/root", res, "warmup")  # worker start-up
    for count in args.counts:
        out[f"ray_{count}"] = ray_ingest(f"{bucket}/src-{count}", f"{bucket}/root", res, f"ray-{count}")
    ray.shutdown()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[2000, 8000])
    parser.add_argument("--loop-counts", type=int, nargs="*", default=[2000])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--num-cpus", type=int, default=4, help="Ray logical CPUs (the machine may have fewer)")
    parser.add_argument("--case", choices=["ray", "loop"], help=argparse.SUPPRESS)  # internal: one subprocess
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args)))
        return

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below: stop the S3 server
    server = start_moto()
    env = {**os.environ, **server.env}
    result: dict = {"benchmark": "ingest", "size": args.size, "resolution": args.resolution,
                    "cpu_count": os.cpu_count(), "ray_num_cpus": args.num_cpus}
    try:
        os.environ.update(server.env)
        server.make_bucket("bench")
        for count in sorted({64, *args.counts, *args.loop_counts}):
            upload(f"s3://bench/src-{count}", make_jpegs(count, args.size, seed=count))
        result["load_avg_1m_before"] = round(os.getloadavg()[0], 2)
        common = ["--resolution", str(args.resolution), "--num-cpus", str(args.num_cpus)]
        cases = [["--case", "ray", "--counts", *map(str, args.counts)]]
        cases += [["--case", "loop", "--counts", str(c)] for c in args.loop_counts]  # one process per count
        for case in cases:
            proc = subprocess.run([sys.executable, __file__, *case, *common], env=env, capture_output=True,
                                  text=True, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"benchmark case {case} failed:\n{proc.stderr[-3000:]}")
            result.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"[bench] {json.dumps(result)}", file=sys.stderr, flush=True)  # partial results survive
        result["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    finally:
        stop_moto(server)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
