"""Fail-fast storage checks before an ingest starts any Ray work: the storage root is reachable (its bucket
exists), the source folder lists usable files; storage exceptions become one-line IngestErrors naming the URL and
the setting to fix (never a secret)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from pggan import storage as st
from pggan.secret_keys import redact_secrets

HIDDEN_PREFIXES = (".", "_")  # the same rule as Ray's directory listing: skipped at the top level of the source


class IngestError(RuntimeError):
    """An ingest that cannot go on; the message is one line saying what was wrong and what to do."""


def _redact(text: str, storage: Any) -> str:
    opts = st.s3_options(storage)
    return " ".join(redact_secrets(text, (opts["access_key_id"], opts["secret_access_key"])).split())


def _is_connection_error(e: BaseException) -> bool:
    names = " ".join(t.__name__ for t in type(e).__mro__)
    text = str(e).lower()
    return ("Connect" in names or "Timeout" in names or "could not connect" in text
            or "connection refused" in text or "couldn't connect" in text or "timed out" in text)


@contextlib.contextmanager
def access(url: str, storage: Any, what: str = "storage") -> Iterator[None]:
    """Turn storage exceptions into an IngestError naming the URL and the setting to fix (never a secret)."""
    try:
        yield
    except IngestError:
        raise
    except FileNotFoundError as e:
        raise IngestError(f"{what} not found: {url} ({_redact(str(e), storage)})") from None
    except PermissionError as e:
        raise IngestError(f"access denied to {url}: {_redact(str(e), storage)}; check storage.access_key_id/"
                          "secret_access_key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") from None
    except Exception as e:
        if _is_connection_error(e):
            endpoint = st.s3_options(storage)["endpoint_url"] or "the default endpoint"
            raise IngestError(f"cannot reach {endpoint} for {url}: {_redact(str(e), storage)}; check "
                              "storage.endpoint_url or AWS_ENDPOINT_URL") from None
        raise IngestError(f"cannot access {url}: {type(e).__name__}: {_redact(str(e), storage)}") from None


def check_root(root: str, storage: Any) -> None:
    """The storage root must be reachable and, on an object store, its bucket must exist."""
    url = st.to_url(root)
    protocol, path = st.split_url(url)
    with access(url, storage, "storage root"):
        fs, _ = st.fsspec_filesystem(url, storage)
        if protocol == "file":
            fs.makedirs(path, exist_ok=True)
            return
        bucket = path.split("/", 1)[0]
        fs.ls(bucket)  # raises for a missing bucket, wrong credentials or an unreachable endpoint


def list_source(source_url: str, storage: Any) -> list[str]:
    """Sorted file keys under the source folder, relative to it, hidden top-level names excluded."""
    with access(source_url, storage, "source"):
        fs, path = st.fsspec_filesystem(source_url, storage)
        path = path.rstrip("/")
        found = fs.find(path)
        if not found and not fs.exists(path):
            raise FileNotFoundError(path)
    if [f.rstrip("/") for f in found] == [path]:
        raise IngestError(f"source must be a folder of images, got a single file: {source_url}")
    keys = []
    for full in found:
        key = full[len(path):].lstrip("/") if full.startswith(path) else full
        if key and not key.startswith(HIDDEN_PREFIXES):
            keys.append(key)
    if not keys:
        raise IngestError(f"no usable image in {source_url}: the folder is empty (hidden '.'/'_' names are ignored)")
    return sorted(keys)
