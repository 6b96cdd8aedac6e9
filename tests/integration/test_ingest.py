"""Ingest end to end on a real local Ray and a real S3 server: levels, skipped files, reuse, rebuilds, failures."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from pggan import dataset as dsm
from pggan import storage as st
from pggan.config import config_from_dict
from pggan.imaging import box_pyramid, decode_pyramid
from pipelines.ingest import IngestError, ingest

pytestmark = pytest.mark.integration
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RES = 16


def png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def noise(seed: int, size=(40, 30), mode="RGB") -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def good_files() -> dict[str, bytes]:
    files = {f"img{i:02d}.jpg": png(noise(i), "JPEG") for i in range(6)}
    files["rgba.png"] = png(noise(10, mode="RGBA"))
    files["grey.webp"] = png(noise(11, mode="L"), "WEBP")
    files["wide.bmp"] = png(noise(12, size=(64, 20)), "BMP")
    files["scan.tiff"] = png(noise(13, mode="CMYK"), "TIFF")
    return files


BAD_REASONS = {
    "empty.jpg": "empty file",
    "notes.jpg": "not an image",
    "cut.jpg": "corrupt or truncated",
    "tiny.png": "too small",
    "bomb.png": "too many pixels",
}


def bad_files() -> dict[str, bytes]:
    cut = png(noise(20, size=(64, 64)), "JPEG")
    return {"empty.jpg": b"", "notes.jpg": b"shopping list: eggs, milk\n" * 4, "cut.jpg": cut[: len(cut) // 2],
            "tiny.png": png(noise(21, size=(8, 8))), "bomb.png": png(noise(22, size=(400, 300)))}


def upload(url: str, files: dict[str, bytes]) -> str:
    for key, data in files.items():
        st.write_bytes_atomic(st.join(url, key), data)
    return url


def make_cfg(source: str, root: str, **data):
    return config_from_dict({"data": {"source": source, "resolution": RES, "max_pixels": 100_000, **data},
                             "storage": {"root": root}})


def test_local_folder_becomes_exact_parquet_levels_and_bad_files_are_listed(tmp_path, ray_local):
    source = upload(str(tmp_path / "src"), {**good_files(), **bad_files()})
    manifest = ingest(make_cfg(source, str(tmp_path / "root")))
    durl = st.join(str(tmp_path / "root"), "datasets", f"src-{RES}")

    assert manifest["count"] == 10 and manifest["files_seen"] == 15 and manifest["resolutions"] == [4, 8, 16]
    assert {s["key"]: s["reason"].split(":")[0] for s in manifest["skipped"]}.keys() == BAD_REASONS.keys()
    for s in manifest["skipped"]:
        assert BAD_REASONS[s["key"]] in s["reason"]
    assert dsm.read_manifest(durl) == manifest

    top = dsm.read_level(durl, RES)  # plain pyarrow, no Ray involved
    assert top["image"].shape == (10, RES, RES, 3) and top["image"].dtype == np.uint8
    assert set(top["key"]) == set(good_files()) and (top["label"] == -1).all()
    for res in (4, 8):
        level = dsm.read_level(durl, res)
        order = {k: i for i, k in enumerate(level["key"])}
        for img, key in zip(top["image"], top["key"]):  # every level is the float box pyramid of the top level
            np.testing.assert_array_equal(level["image"][order[key]], box_pyramid(img)[res])
    i = list(top["key"]).index("img03.jpg")
    np.testing.assert_array_equal(top["image"][i], decode_pyramid(good_files()["img03.jpg"], RES)[RES])


def test_s3_source_and_s3_root_work_through_the_endpoint_from_the_environment(make_bucket, ray_local):
    source = upload(st.join(make_bucket(), "photos"), {**good_files(), "empty.jpg": b""})
    root = st.join(make_bucket(), "pggan")
    manifest = ingest(make_cfg(source, root))
    durl = st.join(root, "datasets", f"photos-{RES}")
    assert manifest["count"] == 10 and [s["key"] for s in manifest["skipped"]] == ["empty.jpg"]
    assert dsm.read_manifest(durl)["source"] == source
    assert dsm.read_level_numpy(durl, 8, limit=3).shape == (3, 8, 8, 3)


def test_synthetic_source_is_generated_then_ingested_where_dataset_url_points(make_bucket, ray_local):
    import ray

    from pipelines.ingest import dataset_url

    root = st.join(make_bucket(), "pggan")
    cfg = config_from_dict({"data": {"source": "synthetic", "synthetic_count": 12, "synthetic_size": 16,
                                     "resolution": 8}, "storage": {"root": root}})
    manifest = ingest(cfg)
    assert manifest["count"] == 12 and manifest["source"] == st.join(root, "sources", "synthetic-12-16-s0")
    assert dsm.read_manifest(dataset_url(cfg)) == manifest
    fs, path = st.pyarrow_filesystem(dsm.level_url(dataset_url(cfg), 8))
    batch = ray.data.read_parquet(path, filesystem=fs).take_batch(4, batch_format="numpy")
    assert batch["image"].shape == (4, 8, 8, 3) and batch["image"].dtype == np.uint8  # what training reads


def test_second_run_reuses_the_data_set_and_force_rebuilds_it(tmp_path, ray_local):
    source = upload(str(tmp_path / "src"), good_files())
    cfg = make_cfg(source, str(tmp_path / "root"))
    first = ingest(cfg)
    level_dir = tmp_path / "root" / "datasets" / f"src-{RES}" / "r0016"
    files_before = sorted(os.listdir(level_dir))

    started = time.monotonic()
    again = ingest(cfg)
    assert again == first and sorted(os.listdir(level_dir)) == files_before
    assert time.monotonic() - started < 5  # no Ray work at all

    rebuilt = ingest(cfg, force=True)
    assert rebuilt["count"] == first["count"] and sorted(os.listdir(level_dir)) != files_before


def test_changed_settings_rebuild_the_data_set(tmp_path, ray_local):
    source = upload(str(tmp_path / "src"), good_files())
    ingest(make_cfg(source, str(tmp_path / "root")))
    padded = ingest(make_cfg(source, str(tmp_path / "root"), fit="pad", background=[0, 0, 255]))
    assert padded["settings"]["fit"] == "pad"
    durl = st.join(str(tmp_path / "root"), "datasets", f"src-{RES}")
    data = dsm.read_level(durl, RES)
    wide = data["image"][list(data["key"]).index("wide.bmp")]
    assert tuple(wide[0, RES // 2]) == (0, 0, 255)  # the padding band shows the configured background


def test_data_set_without_manifest_is_rebuilt_not_used(tmp_path, ray_local):
    source = upload(str(tmp_path / "src"), good_files())
    cfg = make_cfg(source, str(tmp_path / "root"))
    ingest(cfg)
    durl = tmp_path / "root" / "datasets" / f"src-{RES}"
    os.remove(durl / "manifest.json")  # what an ingest killed before its last step leaves behind
    (durl / "r0008" / "partial.parquet").write_bytes(b"half a file")
    manifest = ingest(cfg)
    assert manifest["count"] == 10 and not (durl / "r0008" / "partial.parquet").exists()
    assert dsm.count_rows(str(durl), 8)[0] == 10


def test_labels_come_from_sub_folders(tmp_path, ray_local):
    files = {f"cats/{i}.png": png(noise(i)) for i in range(3)}
    files.update({f"dogs/{i}.png": png(noise(10 + i)) for i in range(2)})
    files["loose.png"] = png(noise(30))
    source = upload(str(tmp_path / "src"), files)
    manifest = ingest(make_cfg(source, str(tmp_path / "root"), labels="folders"))
    assert manifest["labels"] == {"cats": 0, "dogs": 1} and manifest["count"] == 5
    assert manifest["skipped"] == [{"key": "loose.png", "reason": "not inside a class sub-folder (labels=folders)"}]
    data = dsm.read_level(st.join(str(tmp_path / "root"), "datasets", f"src-{RES}"), 4)
    assert {k: int(v) for k, v in zip(data["key"], data["label"])} == {
        "cats/0.png": 0, "cats/1.png": 0, "cats/2.png": 0, "dogs/0.png": 1, "dogs/1.png": 1}


def test_no_usable_image_fails_and_leaves_no_manifest(tmp_path, ray_local):
    source = upload(str(tmp_path / "src"), bad_files())
    with pytest.raises(IngestError, match="no usable image.*all 5 files skipped"):
        ingest(make_cfg(source, str(tmp_path / "root")))
    assert dsm.read_manifest(st.join(str(tmp_path / "root"), "datasets", f"src-{RES}")) is None


def test_empty_source_fails_before_any_ray_work(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(IngestError, match="no usable image.*empty"):
        ingest(make_cfg(str(tmp_path / "src"), str(tmp_path / "root")))


def test_missing_bucket_fails_with_one_clear_line(make_bucket):
    with pytest.raises(IngestError, match="source not found: s3://no-such-bucket-x1/photos"):
        ingest(make_cfg("s3://no-such-bucket-x1/photos", make_bucket()))
    with pytest.raises(IngestError, match="storage root not found"):
        ingest(make_cfg(make_bucket(), "s3://no-such-bucket-x2/root"))


def test_unreachable_endpoint_fails_fast():
    from s3server import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = make_cfg("s3://photos/in", "s3://photos/out")
    cfg = cfg.replace(storage=type(cfg.storage)(root="s3://photos/out", endpoint_url=endpoint,
                                                access_key_id="k", secret_access_key="s"))
    started = time.monotonic()
    with pytest.raises(IngestError, match=f"cannot reach {endpoint}"):
        ingest(cfg)
    assert time.monotonic() - started < 15


def test_wrong_credentials_fail_with_access_denied_and_no_secret_in_the_message():
    from s3server import start_moto, stop_moto

    server = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})  # moto checks keys against its IAM: none exist
    try:
        args = ["--source", "s3://photos/in", "--root", "s3://photos/out", "--set",
                f"storage.endpoint_url={server.endpoint_url}", "--set", "storage.access_key_id=AKIAWRONGKEY",
                "--set", "storage.secret_access_key=TOP-SECRET-VALUE"]
        proc = subprocess.run([sys.executable, "pipelines/ingest.py", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
    finally:
        stop_moto(server)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("ingest: error: access denied to s3://photos/out")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "TOP-SECRET-VALUE" not in proc.stdout + proc.stderr and "AKIAWRONGKEY" not in proc.stdout + proc.stderr


def test_command_line_ingests_and_reports_skipped_files(tmp_path):
    source = upload(str(tmp_path / "src"), {**good_files(), "empty.jpg": b""})
    args = ["--source", source, "--root", str(tmp_path / "root"), "--resolution", "8", "--name", "cli",
            "--set", "scaling.num_cpus=2"]
    proc = subprocess.run([sys.executable, "pipelines/ingest.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "10 images per level, 1 files skipped" in proc.stdout
    manifest = dsm.read_manifest(st.join(str(tmp_path / "root"), "datasets", "cli"))
    assert manifest["resolutions"] == [4, 8] and manifest["skipped"][0]["key"] == "empty.jpg"
