"""Ray Data job: an image folder or bucket (any fsspec URL) -> one Parquet data set per resolution + manifest.json.

    python pipelines/ingest.py --source URL --root URL [--name NAME] [--resolution 64] [--force]
                               [--labels folders] [--fit crop|pad|stretch] [--config FILE] [--set data.k=v ...]

Output: {root}/datasets/{name}/r0004/ ... r{R:04d}/ (Parquet) and manifest.json, written last. Columns of every
level (see pggan/dataset.py): `image` uint8 [res, res, 3] HWC RGB as a Ray tensor column (extension
`ray.data.arrow_tensor_v2`, storage large_list<uint8>), `label` int64 (-1 without labels), `key` string (the
source path relative to --source). Level r/2 is the 2x2 mean of level r's float values, rounded per level (rint).

How it streams (one Ray Data execution; the source is read once):
  1. driver: check the root and list the source with fsspec (fail fast, one line); label map from sub-folders.
  2. read_binary_files -> map_batches(decode_batch): per file, decode, fit, resize to R and build the whole
     pyramid; one wide row per file with `key`, `label`, `error` ("" or why it was skipped) and one image
     column per level (`image_r0004` ...). Bad files never raise: their row carries the reason.
  3. write_datasink(LevelsDatasink): each write task writes its rows once per level to r{res}/ (Parquet, the
     encoding write_parquet uses) and returns the skipped (key, reason) pairs; see pipelines/levels_sink.py
     for why this is not N write_parquet calls.
  4. driver: counts from the Parquet footers; manifest.json written last. A folder without a manifest is
     incomplete (an interrupted ingest) and is rebuilt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable

import numpy as np

if __package__ in (None, ""):  # run as a script (python pipelines/ingest.py): make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pggan import config_args  # noqa: E402
from pggan import dataset as ds_mod
from pggan import storage as st
from pggan import synthetic
from pggan.config import ConfigError, PipelineConfig
from pggan.dataset import (dataset_url, level_name, level_url, read_level_numpy,  # noqa: F401 (the API)
                           source_url)
from pggan.imaging import ImageDecodeError, decode_pyramid
from pggan.resolutions import resolutions
from pggan.storage_checks import IngestError, access, check_root, list_source
from pipelines.runtime import init_ray

WRITE_BUNDLE_BYTES = 32 << 20  # decoded rows per write task (all levels): bounds memory; top-level files ~24 MiB
DECODE_BATCH = 16  # images per map_batches call: bounded memory even for large source files


def resolve_source(cfg: PipelineConfig, log: Callable[[str], None] = print) -> str:
    """data.source as a URL; "synthetic" = {root}/sources/synthetic-{count}-{size}-s{seed}/, generated if missing
    (labelled, one sub-folder per shape kind, and named ...-labelled under data.labels=folders)."""
    url = source_url(cfg)
    if cfg.data.source == "synthetic" and not synthetic.is_complete(url, cfg.storage):
        d = cfg.data
        labelled = d.labels == "folders"
        log(f"[ingest] writing the {'labelled ' if labelled else ''}demo data set: {d.synthetic_count} images of "
            f"{d.synthetic_size}x{d.synthetic_size} to {url}")
        seed = int(getattr(d, "synthetic_seed", 0))
        synthetic.write_synthetic_dataset(url, d.synthetic_count, d.synthetic_size, seed, cfg.storage,
                                          labels=labelled)
    return url


def ingest_settings(cfg: PipelineConfig, source_url: str) -> dict[str, Any]:
    """Everything that changes the output; a manifest with equal settings means the data set can be reused."""
    d = cfg.data
    return {
        "source": source_url,
        "resolution": d.resolution,
        "fit": d.fit,
        "background": [int(c) for c in d.background],
        "min_side": d.min_side or d.resolution,  # 0 = the target resolution: never upscale by default
        "max_pixels": d.max_pixels,
        "labels": d.labels,
        "schema_version": ds_mod.SCHEMA_VERSION,
    }


def decode_batch(batch: dict[str, np.ndarray], *, base: str, settings: dict[str, Any],
                 label_map: dict[str, int] | None) -> dict[str, np.ndarray]:
    """Ray batch {"bytes", "path"} -> wide rows {key, label, error, image_r0004 ... image_r{R}}; never raises
    for a bad file: its row carries the reason in `error` and zero images."""
    res = settings["resolution"]
    keys = [str(p)[len(base):].lstrip("/") for p in batch["path"]]
    n = len(keys)
    images = {r: np.zeros((n, r, r, 3), np.uint8) for r in resolutions(res)}  # [n, r, r, 3] per level
    labels = np.full(n, -1, np.int64)
    errors = [""] * n
    for i, (key, data) in enumerate(zip(keys, batch["bytes"])):
        try:
            if label_map is not None:
                folder = key.split("/", 1)[0] if "/" in key else None
                if folder not in label_map:
                    raise ImageDecodeError("not inside a class sub-folder (labels=folders)")
                labels[i] = label_map[folder]
            levels = decode_pyramid(bytes(data), res, fit=settings["fit"], background=settings["background"],
                                    max_pixels=settings["max_pixels"], min_side=settings["min_side"])
            for r, img in levels.items():
                images[r][i] = img
        except ImageDecodeError as e:
            errors[i] = e.reason
        except Exception as e:  # a bug or a codec crash on one file must not end the job, nor hide the file
            errors[i] = f"unexpected error: {type(e).__name__}: {e}"
    out: dict[str, np.ndarray] = {"key": np.array(keys, dtype=object), "label": labels,
                                  "error": np.array(errors, dtype=object)}
    out.update({f"image_{level_name(r)}": arr for r, arr in images.items()})
    return out


def run_pipeline(source_url: str, durl: str, settings: dict[str, Any], label_map: dict[str, int] | None,
                 storage: Any) -> tuple[int, list[dict[str, str]]]:
    """Steps 2 and 3 of the module docstring; returns (images written per level, skipped files)."""
    import ray

    from pipelines.levels_sink import LevelsDatasink

    src_fs, src_path = st.pyarrow_filesystem(source_url, storage)
    out_fs, out_path = st.pyarrow_filesystem(durl, storage)
    sink = LevelsDatasink(out_path, resolutions(settings["resolution"]), out_fs,
                          min_bytes_per_write=WRITE_BUNDLE_BYTES)
    context = ray.data.DataContext.get_current()
    bars, context.enable_progress_bars = context.enable_progress_bars, True  # long ingests show progress
    try:
        files = ray.data.read_binary_files(src_path, filesystem=src_fs, include_paths=True)
        decoded = files.map_batches(decode_batch, batch_size=DECODE_BATCH, batch_format="numpy",
                                    fn_kwargs={"base": src_path.rstrip("/"), "settings": settings,
                                               "label_map": label_map})
        decoded.write_datasink(sink)
    finally:
        context.enable_progress_bars = bars
    return sink.rows_written, sink.skipped


def folder_labels(keys: list[str], source_url: str) -> dict[str, int]:
    """{sub-folder name: class index}, names sorted; files directly under the source get no class."""
    names = sorted({k.split("/", 1)[0] for k in keys if "/" in k})
    if not names:
        raise IngestError(f"--labels folders: no sub-folders under {source_url}; put each class in its own folder")
    return {name: i for i, name in enumerate(names)}


def ingest(cfg: PipelineConfig, force: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build (or reuse) the per-resolution Parquet data sets for cfg.data; returns the manifest."""
    started = time.monotonic()
    check_root(cfg.storage.root, cfg.storage)  # fails fast: unreachable endpoint, wrong keys, missing bucket
    with access(cfg.storage.root, cfg.storage):
        src = resolve_source(cfg, log)
    durl = dataset_url(cfg)
    settings = ingest_settings(cfg, src)
    with access(durl, cfg.storage):
        existing = ds_mod.read_manifest(durl, cfg.storage)
        partial = existing is None and st.exists(durl, cfg.storage)
    if existing and not force and existing.get("settings") == json.loads(json.dumps(settings)):
        log(f"[ingest] reusing {durl}: {existing['count']} images, settings unchanged (--force rebuilds)")
        return existing
    if existing:
        log(f"[ingest] rebuilding {durl}: " + ("--force" if force else "its settings differ from these"))
    elif partial:
        log(f"[ingest] {durl} has no manifest (an interrupted ingest): rebuilding it")

    keys = list_source(src, cfg.storage)  # fails fast: unreachable, denied, missing, empty
    label_map = folder_labels(keys, src) if cfg.data.labels == "folders" else None
    log(f"[ingest] {len(keys)} files under {src} -> {durl} (resolution {cfg.data.resolution})")
    st.remove(ds_mod.manifest_url(durl), cfg.storage)  # first: a crash from here on leaves an incomplete set
    st.remove(durl, cfg.storage)

    init_ray(cfg)
    written, skipped = run_pipeline(src, durl, settings, label_map, cfg.storage)
    total = written + len(skipped)
    if written == 0:
        st.remove(durl, cfg.storage)
        reasons = sorted({s["reason"] for s in skipped})[:3]
        raise IngestError(f"no usable image in {src}: all {total} files skipped ({'; '.join(reasons)})")

    manifest = build_manifest(durl, settings, total, skipped, label_map, cfg.storage)
    manifest["seconds"] = round(time.monotonic() - started, 2)
    st.write_json_atomic(ds_mod.manifest_url(durl), manifest, cfg.storage)  # last: the set is complete
    log(f"[ingest] done: {manifest['count']} images per level, {len(skipped)} files skipped "
        f"(reasons in {ds_mod.manifest_url(durl)}), {manifest['seconds']} s")
    return manifest


def build_manifest(durl: str, settings: dict[str, Any], total: int, skipped: list[dict[str, str]],
                   label_map: dict[str, int] | None, storage: Any) -> dict[str, Any]:
    levels = {}
    for res in resolutions(settings["resolution"]):
        rows, files = ds_mod.count_rows(durl, res, storage)
        levels[str(res)] = {"path": level_name(res), "count": rows, "files": files}
    counts = {v["count"] for v in levels.values()}
    if len(counts) != 1:
        raise IngestError(f"levels of {durl} disagree on the image count {sorted(counts)}; run again with --force")
    return {
        "schema_version": ds_mod.SCHEMA_VERSION,
        "source": settings["source"],
        "settings": settings,
        "resolutions": resolutions(settings["resolution"]),
        "levels": levels,
        "count": counts.pop(),
        "files_seen": total,
        "skipped_count": len(skipped),
        "skipped": skipped,
        "labels": label_map,
        "columns": ds_mod.COLUMNS,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ----------------------------------------------------------------------------------------------------------------
# Command line (also `pggan ingest`).

def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help="image folder/bucket URL (local path, file://, s3://, any fsspec URL) "
                                         "or 'synthetic' (default: data.source)")
    parser.add_argument("--root", help="storage root URL; output goes to {root}/datasets/{name} (storage.root)")
    parser.add_argument("--name", help="data set name (default: data.name, else from the source: its last folder "
                                       "that is not a number, the numbered ones below it, the resolution)")
    parser.add_argument("--resolution", type=int, help="top resolution, a power of two (data.resolution)")
    parser.add_argument("--labels", choices=["none", "folders"], help="class labels from sub-folder names")
    parser.add_argument("--fit", choices=["crop", "pad", "stretch"], help="non-square images (data.fit)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a matching data set exists")
    config_args.add_config_args(parser, set_example="data.min_side=32")


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """--config and --set first, then the explicit flags on top; only what ingest needs is validated (data.*,
    storage.root), not the training schedule."""
    from dataclasses import replace

    from pggan.config import validate_data

    cfg = config_args.config_from_args(args, check=validate_data)
    data = {k: v for k, v in (("source", args.source), ("name", args.name), ("resolution", args.resolution),
                              ("labels", args.labels), ("fit", args.fit)) if v is not None}
    storage = {"root": args.root} if args.root else {}
    cfg = cfg.replace(data=replace(cfg.data, **data), storage=replace(cfg.storage, **storage))
    validate_data(cfg)
    return cfg


def run(args: argparse.Namespace, prog: str = "ingest") -> int:
    """Ingest an image folder/bucket into per-resolution Parquet data sets (Ray Data). Error lines start with
    `prog`, the command the user typed (`pggan ingest` passes its own)."""
    try:
        ingest(config_from_args(args), force=args.force)
    except ConfigError as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except IngestError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ingest", description=run.__doc__)
    add_args(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
