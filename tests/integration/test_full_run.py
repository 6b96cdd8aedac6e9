"""The orchestrator end to end on a local Ray: every stage trained, evaluated and recorded; a rerun trains
nothing twice; a changed config or unusable data is refused before any training."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from pipelines.full_run import main
from train_helpers import error_line, run_dir, starts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def args(root: str, run_id: str, *sets: str) -> list[str]:
    return ["--config", "tiny.yaml", "--set", f"storage.root={root}", "--run-id", run_id,
            *[a for s in sets for a in ("--set", s)]]


def manifest(root: str, run_id: str) -> dict:
    with open(os.path.join(run_dir(root, run_id), "run.json")) as f:
        return json.load(f)


def test_a_run_trains_every_stage_records_it_and_a_rerun_trains_nothing(tracked_full_run, capsys):
    """The session's tracked tiny run (conftest.tracked_full_run: this same main(), run once for this test and the
    MLflow end-to-end test), then a rerun and a changed config under its id."""
    tiny_root, sets = tracked_full_run["root"], tracked_full_run["sets"]
    assert tracked_full_run["code"] == 0, (tracked_full_run["stdout"][-3000:], tracked_full_run["stderr"][-3000:])
    run = manifest(tiny_root, "full")
    assert run["status"] == "done"
    assert [(s["resolution"], s["status"]) for s in run["stages"].values()] == [(4, "done"), (8, "done")]
    for res, stage in ((4, run["stages"]["4"]), (8, run["stages"]["8"])):
        assert stage["checkpoint"].startswith("file://") and f"/stages/r{res:04d}/nimg-" in stage["checkpoint"]
        m = stage["metrics"]
        assert np.isfinite(m["swd_avg"]) and 0 <= m["ms_ssim"] <= 1
        assert list(m["swd"]) == list(m["real_swd"]) == [str(res)]            # SWD keyed by resolution
        assert m["swd_ratio"] == pytest.approx(m["swd_avg"] / m["real_swd_avg"]) and m["swd_ratio"] > 0
        assert (m["num_reals"], m["num_fakes"], m["level_size"], m["seed"]) == (64, 64, 128, 0)  # eval.num_images
        reference = os.path.join(tiny_root, "datasets", os.path.basename(run["dataset"]), "swd_reference",
                                 f"r{res:04d}-n64-s0.json")
        with open(reference) as f:
            assert json.load(f)["swd_avg"] == m["real_swd_avg"]                 # stored beside the manifest
        grid = np.asarray(Image.open(os.path.join(run_dir(tiny_root, "full"), "samples", f"r{res:04d}.png")))
        tile = 64 // res                                               # tiles enlarged to 64 px, 2 px gutters
        assert grid.shape == (4 * 64 + 3 * 2, 4 * 64 + 3 * 2, 3)       # eval.grid_size 4
        first = grid[:64, :64]                                         # one sample: res x res blocks of tile px
        np.testing.assert_array_equal(first, first[::tile, ::tile].repeat(tile, 0).repeat(tile, 1))
        assert len(np.unique(first.reshape(-1, 3), axis=0)) > 1        # an image, not a flat colour
    assert run["stages"]["8"]["nimg"] == 400                           # 0.2 kimg fade + 0.2 kimg stabilize
    grown = starts(tiny_root, "full", 8)
    assert [(s["source"], s["nimg"]) for s in grown] == [("grown", 0)]
    assert grown[0]["from"] == run["stages"]["4"]["checkpoint"]        # stage 8 grew from stage 4's last state
    assert run["config"]["model"]["fmap_max"] == 16
    out = tracked_full_run["stdout"]
    assert "run id full" in out and "resume with: python pipelines/full_run.py" in out
    for res in (4, 8):                                                 # the stage-end line: SWD by resolution, ratio
        swd = run["stages"][str(res)]["metrics"]["swd"][str(res)]
        assert f"stage {res}x{res} done" in out and f"SWD x1e3 {{{res}: {swd:.1f}}} (real-vs-real {{{res}: " in out
    assert "@champion -> version 1" in out                            # why the alias moved

    assert main(args(tiny_root, "full", *sets)) == 0                   # again: nothing left to do
    assert [len(starts(tiny_root, "full", r)) for r in (4, 8)] == [1, 1]
    assert manifest(tiny_root, "full")["stages"] == run["stages"]
    assert "is complete" in capsys.readouterr().out

    assert main(args(tiny_root, "full", *sets, "model.fmap_max=32")) == 2   # another model under the same id
    err = error_line(capsys.readouterr().err)
    assert "model.fmap_max: 16 -> 32" in err


@pytest.mark.parametrize("sets, expected", [
    (("data.source=/nonexistent/images", "data.name=missing"), "/nonexistent/images"),
    (("data.resolution=32", "schedule.batch_size={4: 16, 8: 16, 16: 16, 32: 16}"), "no usable image"),  # 16x16 images
])
def test_unusable_data_fails_in_one_line_before_any_training(tiny_root, capsys, sets, expected):
    assert main(args(tiny_root, "baddata", *sets)) == 1
    err = error_line(capsys.readouterr().err)
    assert expected in err
    assert not os.path.exists(os.path.join(run_dir(tiny_root, "baddata"), "stages"))
