"""The full_run command line without Ray: help, bad settings in one line, the resume command it prints."""
from __future__ import annotations

import os
import subprocess
import sys

from pipelines.full_run import argv_of, main, parse_args, resume_command

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


def test_the_resume_command_leaves_secret_keys_out_and_says_how_to_pass_them_again():
    args = parse_args(["--config", "tiny.yaml", "--set", "storage.secret_access_key=SENTINEL-1",
                       "--set=storage.access_key_id=SENTINEL-2", "--set", "data.resolution=16", "--run-id", "old"])
    argv = argv_of(args)                                                  # what run.json records
    assert "SENTINEL" not in " ".join(argv) and "storage.secret_access_key=***" in argv
    again = resume_command(argv, "old")
    assert again.startswith("python pipelines/full_run.py --config tiny.yaml --set data.resolution=16 --run-id old")
    assert "***" not in again and "storage.secret_access_key" in again and "AWS_SECRET_ACCESS_KEY" in again


def test_a_config_error_never_shows_a_secret_given_on_the_command_line(capsys, tmp_path):
    assert main(["--set", "storage.secret_access_key=SENTINEL-3", "--set", f"storage.root={tmp_path}",
                 "--set", "scaling.num_workers=3"]) == 2
    err = capsys.readouterr().err
    assert "scaling.num_workers (3)" in err and "SENTINEL" not in err


def test_a_submitted_job_with_a_relative_storage_root_is_refused(capsys, monkeypatch):
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")                 # what Ray's job supervisor sets
    assert main(["--set", "storage.root=./pggan-data"]) == 2
    assert "absolute path or URL" in capsys.readouterr().err


def help_text(*args: str) -> str:
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "COLUMNS": "100"}
    out = subprocess.run([sys.executable, *args, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_pggan_train_takes_full_runs_arguments_with_the_same_help():
    train = help_text("-m", "pipelines.cli", "train")
    assert train.startswith("usage: pggan train [-h] [--config FILE] [--set KEY=VALUE] [--run-id RUN_ID]")
    for text in ("--config", "--set", "--run-id", "data.source", "storage.root", "tracking.uri", "scaling.*",
                 "Exit status"):
        assert text in train, text
    script = help_text("pipelines/full_run.py")
    assert train[train.index("options:"):] == script[script.index("options:"):]   # options, notes, exit status


def test_pggan_train_with_an_unknown_key_exits_2_naming_it_before_ray_is_imported(tmp_path):
    code = ("import sys; from pipelines.cli import main; status = main(['train', '--set', 'schedule.no_such_key=1', "
            f"'--set', 'storage.root={tmp_path}']); print('ray' in sys.modules); sys.exit(status)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    err = out.stderr.strip()
    assert err.startswith("pggan train: error:") and "schedule.no_such_key" in err and len(err.splitlines()) == 1
    assert out.stdout.strip() == "False"                                  # pggan's cli path imports no Ray
    assert not os.listdir(tmp_path)


def test_a_private_local_ray_gets_the_fast_stage_settings_unless_the_user_set_them():
    from pipelines.runtime import LOCAL_RAY_ENV, local_ray_env

    assert local_ray_env({}) == LOCAL_RAY_ENV
    assert float(LOCAL_RAY_ENV["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"]) < 2.0          # Ray Train's default poll is 2 s
    mine = {"RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": "32"}
    assert "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS" not in local_ray_env(mine)          # the user's value wins
