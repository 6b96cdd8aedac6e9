"""The ingested data set on storage: its URLs, columns and manifest, and reading a level with plain pyarrow.

Layout: {storage.root}/datasets/{name}/manifest.json (written last) and r0004/ ... r{R:04d}/, one Parquet
dataset per resolution. Columns of every level:
  image  uint8 [res, res, 3] HWC RGB. Written by Ray Data as a tensor column: Arrow extension type
         `ray.data.arrow_tensor_v2` over storage `large_list<uint8>` (each row res*res*3 bytes, row-major HWC);
         plain pyarrow without Ray sees the storage type and the shape in the field's extension metadata.
  label  int64, the class index from `manifest["labels"]` (--labels folders), else -1.
  key    string, the source file's path relative to the source URL (e.g. "cats/001.jpg").
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from pggan import storage as st

if TYPE_CHECKING:
    from pggan.config import PipelineConfig, StorageConfig

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
COLUMNS = {
    "image": "uint8 [res, res, 3] HWC RGB; Ray tensor column (extension ray.data.arrow_tensor_v2, "
             "storage large_list<uint8> of res*res*3 values per row)",
    "label": "int64 class index from manifest['labels'] (labels=folders), -1 when unlabelled",
    "key": "string: the source file's path relative to the source URL",
}


def level_name(res: int) -> str:
    return f"r{res:04d}"


def level_url(dataset_url: str, res: int) -> str:
    """The Parquet folder of one resolution: level_url('.../celeba', 8) -> '.../celeba/r0008'."""
    return st.join(dataset_url, level_name(res))


_SIZE_LIKE = re.compile(r"\d+(?:x\d+|px)?", re.IGNORECASE)   # '64', '64x64', '128px': say a size, not what


def default_name(source_url: str, resolution: int) -> str:
    """A data set name from the source's path and the resolution: the last path part that is not just a number or
    a size, then the number-like parts after it, then the resolution. 's3://b/faces/' at 64 -> 'faces-64';
    '.../img/google/64' at 32 -> 'google-64-32' (not '64-32'). Raises ConfigError (set data.name) when every
    part is a number or size (e.g. '/64')."""
    from pggan.config import ConfigError

    _, path = st.split_url(st.to_url(source_url))
    parts = [re.sub(r"[^A-Za-z0-9._-]+", "-", p).strip("-.") for p in path.split("/")]
    parts = [p for p in parts if p]
    named = [i for i, p in enumerate(parts) if not _SIZE_LIKE.fullmatch(p)]
    if not named:
        raise ConfigError(f"data.name: cannot derive a readable data set name from data.source {source_url!r} "
                          "(its folders are only numbers); set data.name (or --name), e.g. data.name=faces")
    return "-".join(parts[named[-1]:] + [str(resolution)])


def source_url(cfg: PipelineConfig) -> str:
    """data.source as a URL, without touching storage: "synthetic" is {root}/sources/synthetic-{count}-{size}-s{seed}
    (with "-labelled" appended, class sub-folders, under data.labels=folders)."""
    if cfg.data.source != "synthetic":
        return st.to_url(cfg.data.source)
    seed = int(getattr(cfg.data, "synthetic_seed", 0))  # data.synthetic_seed if the config has one
    name = synthetic_source_name(cfg.data.synthetic_count, cfg.data.synthetic_size, seed,
                                 labels=cfg.data.labels == "folders")
    return st.join(st.to_url(cfg.storage.root), "sources", name)


def synthetic_source_name(count: int, size: int, seed: int, labels: bool = False) -> str:
    """The demo source's folder name; a labelled one (class sub-folders) has its own, so that neither kind of
    source, nor the data set named after it, is ever reused for the other."""
    return f"synthetic-{count}-{size}-s{seed}" + ("-labelled" if labels else "")


def dataset_url(cfg: PipelineConfig) -> str:
    """{storage.root}/datasets/{name}; name = data.name, else default_name(source, resolution) (no storage access)."""
    name = cfg.data.name or default_name(source_url(cfg), cfg.data.resolution)
    return st.join(st.to_url(cfg.storage.root), "datasets", name)


def manifest_url(dataset_url_: str) -> str:
    return st.join(dataset_url_, MANIFEST)


def read_manifest(dataset_url_: str, storage: StorageConfig | None = None) -> dict[str, Any] | None:
    """The data set's manifest, or None when it has none (never ingested, or interrupted: incomplete)."""
    return st.read_json(manifest_url(dataset_url_), storage)


def images_from_column(column: pa.ChunkedArray | pa.Array, res: int) -> np.ndarray:
    """An `image` column (Ray tensor extension type or its list<uint8> storage) -> uint8 [N, res, res, 3]."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = []
    for chunk in chunks:
        if isinstance(chunk.type, pa.ExtensionType):
            chunk = chunk.storage
        if pa.types.is_fixed_size_binary(chunk.type) or pa.types.is_binary(chunk.type):
            flat = np.frombuffer(b"".join(chunk.to_pylist()), np.uint8)
        else:
            flat = chunk.flatten().to_numpy(zero_copy_only=False)  # respects offsets and slicing
        parts.append(np.asarray(flat, np.uint8).reshape(len(chunk), res, res, 3))  # [n, res, res, 3]
    if not parts:
        return np.zeros((0, res, res, 3), np.uint8)
    return np.concatenate(parts)


def _level_dataset(dataset_url_: str, res: int, storage: StorageConfig | None) -> pads.Dataset:
    fs, path = st.pyarrow_filesystem(level_url(dataset_url_, res), storage)
    return pads.dataset(path, filesystem=fs, format="parquet", exclude_invalid_files=False)


def read_level(dataset_url_: str, res: int, storage: StorageConfig | None = None,
               limit: int | None = None) -> dict[str, np.ndarray]:
    """{"image": uint8 [N, res, res, 3], "label": int64 [N], "key": str [N]} read with plain pyarrow (no Ray)."""
    data = _level_dataset(dataset_url_, res, storage)
    table = data.head(limit, columns=list(COLUMNS)) if limit is not None else data.to_table(columns=list(COLUMNS))
    return {
        "image": images_from_column(table.column("image"), res),
        "label": table.column("label").to_numpy().astype(np.int64),
        "key": np.asarray(table.column("key").to_pylist(), dtype=object),
    }


def read_labels(dataset_url_: str, res: int, storage: StorageConfig | None = None) -> np.ndarray:
    """The `label` column of one level, int64 [N] (-1 where unlabelled), in the level's row order; reads no image."""
    table = _level_dataset(dataset_url_, res, storage).to_table(columns=["label"])
    return table.column("label").to_numpy().astype(np.int64)


def read_level_numpy(dataset_url_: str, res: int, storage: StorageConfig | None = None,
                     limit: int | None = None) -> np.ndarray:
    """The images of one level as uint8 [N, res, res, 3] (at most `limit`), with plain pyarrow."""
    return read_level(dataset_url_, res, storage, limit)["image"]


def count_rows(dataset_url_: str, res: int, storage: StorageConfig | None = None) -> tuple[int, int]:
    """(rows, files) of one level, from the Parquet footers only."""
    data = _level_dataset(dataset_url_, res, storage)
    return data.count_rows(), len(data.files)


def read_level_rows(dataset_url_: str, res: int, indices: np.ndarray,
                    storage: StorageConfig | None = None) -> np.ndarray:
    """The images at row `indices` (sorted, in [0, rows)) of one level: uint8 [len(indices), res, res, 3]. Reads
    only what the rows need (pyarrow's take), so a random sample of a large level stays cheap."""
    data = _level_dataset(dataset_url_, res, storage)
    table = data.take(pa.array(np.asarray(indices, np.int64)), columns=["image"])
    return images_from_column(table.column("image"), res)
