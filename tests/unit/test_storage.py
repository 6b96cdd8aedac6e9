"""URLs, atomic writes and JSON on local disk and on a real S3 server (moto on loopback); credentials precedence."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pggan import storage as st
from pggan.config import StorageConfig


def test_bare_paths_become_absolute_file_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert st.to_url("data/x") == f"file://{tmp_path}/data/x"
    assert st.to_url("s3://bucket/a/") == "s3://bucket/a"
    assert st.split_url("s3://bucket/a/b") == ("s3", "bucket/a/b")
    assert st.split_url(str(tmp_path)) == ("file", str(tmp_path))


def test_join_adds_parts_with_single_slashes():
    assert st.join("s3://b/root/", "datasets", "/x/", "r0004") == "s3://b/root/datasets/x/r0004"
    assert st.join("file:///tmp/a", "b") == "file:///tmp/a/b"


def test_local_atomic_write_leaves_no_temp_files(tmp_path):
    url = str(tmp_path / "deep" / "dir" / "m.json")
    st.write_json_atomic(url, {"a": 1})
    st.write_json_atomic(url, {"a": 2})
    assert st.read_json(url) == {"a": 2}
    assert os.listdir(tmp_path / "deep" / "dir") == ["m.json"]


def test_read_json_of_a_missing_file_is_none(tmp_path):
    assert st.read_json(str(tmp_path / "nope.json")) is None
    assert not st.exists(str(tmp_path / "nope.json"))


def test_remove_deletes_a_tree_and_tolerates_nothing(tmp_path):
    st.write_bytes_atomic(str(tmp_path / "t" / "a" / "b.bin"), b"x")
    st.remove(str(tmp_path / "t"))
    st.remove(str(tmp_path / "t"))
    assert not (tmp_path / "t").exists()


def test_s3_round_trip_through_fsspec_and_pyarrow(make_bucket):
    root = make_bucket()
    url = st.join(root, "runs", "x.json")
    st.write_json_atomic(url, {"ok": True})
    assert st.exists(url) and st.read_json(url) == {"ok": True}

    fs, path = st.pyarrow_filesystem(st.join(root, "t.parquet"))
    pq.write_table(pa.table({"v": [1, 2, 3]}), path, filesystem=fs)
    assert st.read_bytes(st.join(root, "t.parquet"))[:4] == b"PAR1"
    st.remove(st.join(root, "runs"))
    assert not st.exists(url)


def test_config_credentials_win_over_the_environment(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # a wrong endpoint in the environment
    cfg = StorageConfig(endpoint_url=s3_server.endpoint_url, access_key_id="cfg-key", secret_access_key="cfg-secret")
    opts = st.s3_options(cfg)
    assert opts["endpoint_url"] == s3_server.endpoint_url and opts["access_key_id"] == "cfg-key"
    bucket = s3_server.make_bucket()
    st.write_bytes_atomic(st.join(bucket, "k"), b"v", cfg)
    assert st.read_bytes(st.join(bucket, "k"), cfg) == b"v"


def test_environment_is_used_when_the_config_is_blank(s3_server):
    opts = st.s3_options(StorageConfig())
    assert opts["endpoint_url"] == s3_server.endpoint_url and opts["access_key_id"] == "testing"


def test_unreachable_endpoint_fails_within_seconds():
    import time

    from s3server import free_port

    cfg = StorageConfig(endpoint_url=f"http://127.0.0.1:{free_port()}", access_key_id="k", secret_access_key="s")
    start = time.monotonic()
    with pytest.raises(Exception, match="(?i)connect"):
        st.read_bytes("s3://bucket/key", cfg)
    assert time.monotonic() - start < 15
