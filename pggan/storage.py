"""URLs to filesystems: fsspec and pyarrow filesystems for local paths, file:// and s3:// (any fsspec URL), atomic writes."""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from typing import TYPE_CHECKING, Any

import fsspec
import pyarrow.fs as pafs

if TYPE_CHECKING:
    from pggan.config import StorageConfig

# Object stores where a single PUT is already atomic: readers see the old object or the new one, never half.
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"}
# Fail fast on a wrong endpoint: a few seconds, not botocore's minutes of retries.
_CONNECT_TIMEOUT_S = 5
_READ_TIMEOUT_S = 60
_MAX_ATTEMPTS = 2


def to_url(path_or_url: str | os.PathLike) -> str:
    """A bare path becomes an absolute file:// URL; URLs are returned unchanged (trailing slash removed)."""
    text = os.fspath(path_or_url)
    if "://" in text:
        protocol, rest = text.split("://", 1)
        return f"{protocol}://{rest.rstrip('/') or '/'}" if protocol != "file" else "file://" + _abs(rest)
    return "file://" + _abs(text)


def _abs(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path)) if path else os.path.abspath(".")


def split_url(url: str) -> tuple[str, str]:
    """'s3://b/k' -> ('s3', 'b/k'); 'file:///x' or '/x' -> ('file', '/x')."""
    url = to_url(url)
    protocol, rest = url.split("://", 1)
    return protocol, rest


def join(url: str, *parts: str) -> str:
    """Join URL path parts with '/': join('s3://b/root', 'datasets', 'x') -> 's3://b/root/datasets/x'."""
    out = to_url(url)
    for part in parts:
        part = str(part).strip("/")
        if part:
            out = out.rstrip("/") + "/" + part
    return out


def s3_options(storage: StorageConfig | None = None) -> dict[str, str | None]:
    """Endpoint, keys and region: the config's values win, else the standard AWS environment variables."""
    def pick(field: str, env: str) -> str | None:
        value = getattr(storage, field, None) if storage is not None else None
        return value or os.environ.get(env) or None

    return {
        "endpoint_url": pick("endpoint_url", "AWS_ENDPOINT_URL"),
        "access_key_id": pick("access_key_id", "AWS_ACCESS_KEY_ID"),
        "secret_access_key": pick("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
        "region": pick("region", "AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
    }


def fsspec_filesystem(url: str, storage: StorageConfig | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """(fsspec filesystem, path inside it) for a URL; S3 gets the configured endpoint, keys and short timeouts."""
    protocol, path = split_url(url)
    if protocol in ("s3", "s3a"):
        opts = s3_options(storage)
        client_kwargs = {"region_name": opts["region"]} if opts["region"] else {}
        fs = fsspec.filesystem(
            "s3",
            key=opts["access_key_id"],
            secret=opts["secret_access_key"],
            endpoint_url=opts["endpoint_url"],
            client_kwargs=client_kwargs,
            config_kwargs={
                "connect_timeout": _CONNECT_TIMEOUT_S,
                "read_timeout": _READ_TIMEOUT_S,
                "retries": {"max_attempts": _MAX_ATTEMPTS, "mode": "standard"},
            },
            use_listings_cache=False,  # other processes (Ray workers) write here too
        )
        fs.retries = _MAX_ATTEMPTS  # s3fs's own retry loop on top of botocore's
        return fs, path
    if protocol == "file":
        return fsspec.filesystem("file"), path
    fs, fs_path = fsspec.core.url_to_fs(url)
    return fs, fs_path


def pyarrow_filesystem(url: str, storage: StorageConfig | None = None) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it): native S3/local, any other fsspec URL wrapped."""
    protocol, path = split_url(url)
    if protocol in ("s3", "s3a"):
        opts = s3_options(storage)
        kwargs: dict[str, Any] = {
            "access_key": opts["access_key_id"],
            "secret_key": opts["secret_access_key"],
            "connect_timeout": _CONNECT_TIMEOUT_S,
            "request_timeout": _READ_TIMEOUT_S,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=_MAX_ATTEMPTS),
        }
        if opts["endpoint_url"]:
            kwargs["endpoint_override"] = opts["endpoint_url"]
        if opts["region"]:
            kwargs["region"] = opts["region"]
        return pafs.S3FileSystem(**kwargs), path
    if protocol == "file":
        return pafs.LocalFileSystem(), path
    fs, fs_path = fsspec_filesystem(url, storage)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), fs_path


def exists(url: str, storage: StorageConfig | None = None) -> bool:
    fs, path = fsspec_filesystem(url, storage)
    return bool(fs.exists(path))


def read_bytes(url: str, storage: StorageConfig | None = None) -> bytes:
    fs, path = fsspec_filesystem(url, storage)
    return fs.cat_file(path)


def write_bytes_atomic(url: str, data: bytes, storage: StorageConfig | None = None) -> None:
    """Write so that readers see the old content or the new, never a partial file (temp name + rename)."""
    protocol, _ = split_url(url)
    fs, path = fsspec_filesystem(url, storage)
    if protocol in _OBJECT_STORES:
        fs.pipe_file(path, data)
        return
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = posixpath.join(parent, f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")
    if protocol == "file":
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return
    fs.pipe_file(tmp, data)
    fs.mv(tmp, path)


def write_json_atomic(url: str, obj: Any, storage: StorageConfig | None = None) -> None:
    write_bytes_atomic(url, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), storage)


def read_json(url: str, storage: StorageConfig | None = None) -> Any | None:
    """The parsed JSON at url, or None when there is no such file."""
    try:
        return json.loads(read_bytes(url, storage))
    except FileNotFoundError:
        return None


def remove(url: str, storage: StorageConfig | None = None) -> None:
    """Delete a file or folder tree; nothing to delete is fine."""
    fs, path = fsspec_filesystem(url, storage)
    if fs.exists(path):
        fs.rm(path, recursive=True)
