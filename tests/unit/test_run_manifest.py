"""The run manifest: stages and their status, resume bookkeeping, and which config changes a resume allows."""
from __future__ import annotations

import pytest

from pggan import run_manifest
from pggan.config import load_config


@pytest.fixture
def cfg(tmp_path):
    return load_config("tiny.yaml", [f"storage.root={tmp_path}"])


def test_a_new_run_lists_every_stage_as_pending_and_survives_a_round_trip(cfg):
    run = run_manifest.new_run(cfg, "r1", [4, 8], "file:///data")
    run_manifest.save_run(cfg.storage.root, run)
    back = run_manifest.load_run(cfg.storage.root, "r1")
    assert [s["status"] for s in back["stages"].values()] == ["pending", "pending"]
    assert back["config"]["data"]["resolution"] == 8 and back["dataset"] == "file:///data"


def test_an_unknown_run_id_has_no_manifest(cfg):
    assert run_manifest.load_run(cfg.storage.root, "never-started") is None


def test_stage_transitions_record_checkpoint_and_seed_the_next_stage(cfg):
    run = run_manifest.new_run(cfg, "r1", [4, 8], "d")
    assert run_manifest.last_checkpoint_before(run, 4) is None
    run_manifest.mark_stage(run, 4, "running")
    run_manifest.mark_stage(run, 4, "done", checkpoint="file:///c4", nimg=208, metrics={"swd_avg": 1.0})
    assert run_manifest.is_done(run, 4) and not run_manifest.is_done(run, 8)
    assert run_manifest.last_checkpoint_before(run, 8) == "file:///c4"
    assert {"started", "finished"} <= set(run_manifest.stage(run, 4))
    with pytest.raises(ValueError, match="status"):
        run_manifest.mark_stage(run, 8, "finished")


def test_resuming_with_only_harmless_changes_is_allowed(cfg):
    run = run_manifest.new_run(cfg, "r1", [4, 8], "d")
    resumed = load_config("tiny.yaml", [f"storage.root={cfg.storage.root}", "scaling.num_workers=1",
                                        "scaling.max_failures=5", "schedule.tick_kimg=0.5",
                                        "storage.secret_access_key=s3cr3t"])
    run_manifest.check_same_config(run, resumed)                                 # no error


def test_a_run_started_with_keys_on_the_command_line_resumes_with_keys_from_the_environment(tmp_path):
    started = load_config("tiny.yaml", [f"storage.root={tmp_path}", "storage.access_key_id=AKIA1",
                                        "storage.secret_access_key=s3cr3t"])
    run = run_manifest.new_run(started, "r1", [4, 8], "d")
    run_manifest.save_run(str(tmp_path), run)
    assert "s3cr3t" not in (tmp_path / "runs" / "r1" / "run.json").read_text()
    run_manifest.check_same_config(run_manifest.load_run(str(tmp_path), "r1"),
                                   load_config("tiny.yaml", [f"storage.root={tmp_path}"]))


def test_resuming_with_a_different_model_or_schedule_fails_naming_the_keys(cfg):
    run = run_manifest.new_run(cfg, "r1", [4, 8], "d")
    changed = load_config("tiny.yaml", [f"storage.root={cfg.storage.root}", "model.fmap_max=32",
                                        "schedule.batch_size={4: 32, 8: 16}"])
    with pytest.raises(run_manifest.RunError) as e:
        run_manifest.check_same_config(run, changed)
    assert "model.fmap_max: 16 -> 32" in str(e.value) and "schedule.batch_size" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("bad", ["", "../x", "a b", "x" * 200])
def test_run_ids_that_are_not_safe_path_parts_are_refused(bad):
    with pytest.raises(run_manifest.RunError, match="--run-id"):
        run_manifest.check_run_id(bad)


def test_new_run_ids_are_time_based_and_distinct():
    a, b = run_manifest.new_run_id(0), run_manifest.new_run_id(0)
    assert a != b and a[:15] == b[:15] and run_manifest.check_run_id(a) == a
