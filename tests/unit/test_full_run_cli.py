"""The full_run command line without Ray: help, bad settings in one line, the resume command it prints."""
from __future__ import annotations

import os
import subprocess
import sys

from pipelines.full_run import main, resume_command

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_help_documents_the_interface_when_run_as_a_script():
    out = subprocess.run([sys.executable, "pipelines/full_run.py", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert out.returncode == 0, out.stderr
    for text in ("--config", "--set", "--run-id", "data.source", "storage.root", "scaling.num_workers",
                 "scaling.use_gpu", "schedule.fade_kimg", "tracking.uri", "ray job submit", "scaling.*"):
        assert text in out.stdout, text


def test_bad_settings_fail_in_one_line_before_anything_starts(capsys, tmp_path):
    assert main(["--set", "scaling.num_workers=3", "--set", f"storage.root={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "schedule.batch_size" in err and "scaling.num_workers (3)" in err and len(err.splitlines()) == 1
    assert not os.listdir(tmp_path)


def test_a_bad_run_id_fails_in_one_line(capsys, tmp_path):
    assert main(["--run-id", "../elsewhere", "--set", f"storage.root={tmp_path}"]) == 2
    assert "--run-id" in capsys.readouterr().err


def test_the_resume_command_repeats_the_arguments_with_the_run_id():
    argv = ["--config", "tiny.yaml", "--set", "storage.root=/x y", "--run-id", "old"]
    assert resume_command(argv, "r1") == ("python pipelines/full_run.py --config tiny.yaml --set "
                                          "'storage.root=/x y' --run-id r1")


def test_a_submitted_job_with_a_relative_storage_root_is_refused(capsys, monkeypatch):
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")                 # what Ray's job supervisor sets
    assert main(["--set", "storage.root=./pggan-data"]) == 2
    assert "absolute path or URL" in capsys.readouterr().err
