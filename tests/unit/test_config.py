"""Config: presets load, overrides apply, and every impossible value is an error that names its key."""
import subprocess
import sys
from pathlib import Path

import pytest

from pggan.config import (PAPER_BATCH_SIZE, PRESETS, ConfigError, PipelineConfig, config_from_dict,
                          config_to_dict, flat_params, load_config, validate_data)
from pggan.secret_keys import redact_secrets


@pytest.mark.parametrize("name", ["demo.yaml", "tiny.yaml", "celeba-hq-1024.yaml"])
def test_every_preset_loads_and_round_trips(name):
    cfg = load_config(name)
    assert isinstance(cfg, PipelineConfig)
    assert config_from_dict(config_to_dict(cfg, redact=False)) == cfg


def test_default_config_is_the_demo():
    assert load_config() == load_config("demo.yaml")


def test_presets_are_package_data_and_the_checkouts_pipelines_configs_is_the_same_folder(tmp_path, monkeypatch):
    repo = Path(__file__).resolve().parents[2]
    assert {p.name for p in PRESETS.iterdir()} >= {"demo.yaml", "tiny.yaml", "celeba-hq-1024.yaml"}
    assert str(PRESETS).startswith(str(repo / "pggan"))                # found inside the package, not by layout
    link = repo / "pipelines" / "configs"
    assert link.is_symlink() and link.readlink() == Path("../pggan/presets")   # relative: survives copies
    assert load_config(link / "tiny.yaml") == load_config("tiny.yaml")
    monkeypatch.chdir(tmp_path)                                         # a bare name works from anywhere
    assert load_config("tiny.yaml").data.resolution == load_config(link / "tiny.yaml").data.resolution


def test_a_missing_config_file_names_it_and_the_presets(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "nope.yaml")
    message = str(e.value)
    assert "nope.yaml" in message and "cannot read it" in message
    assert all(name in message for name in ("demo.yaml", "tiny.yaml", "celeba-hq-1024.yaml"))


def test_paper_preset_has_the_paper_network_and_schedule():
    cfg = load_config("celeba-hq-1024.yaml")
    assert cfg.data.resolution == 1024
    assert [cfg.model.channels(2 ** k) for k in range(2, 11)] == [512, 512, 512, 512, 256, 128, 64, 32, 16]
    assert (cfg.schedule.fade_kimg, cfg.schedule.stabilize_kimg) == (600, 600)
    assert (cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2, cfg.optim.gp_lambda, cfg.optim.drift) == \
        (0.001, 0.0, 0.99, 10.0, 0.001)


def test_overrides_are_parsed_as_yaml_and_typed():
    cfg = load_config(None, ["data.resolution=64", "scaling.use_gpu=true", "schedule.fade_kimg=1.5",
                             "schedule.batch_size={4: 8, 8: 8, 16: 8, 32: 8, 64: 4}", "storage.root=s3://b/x"])
    assert cfg.data.resolution == 64 and cfg.scaling.use_gpu is True
    assert cfg.schedule.fade_kimg == 1.5 and cfg.schedule.batch_size[64] == 4
    assert cfg.storage.root == "s3://b/x"


@pytest.mark.parametrize("override, key", [
    ("data.resolution=48", "data.resolution"),
    ("data.resolution=2", "data.resolution"),
    ("schedule.fade_kimg=-1", "schedule.fade_kimg"),
    ("schedule.batch_size={4: 32, 8: 32, 16: 33, 32: 16}", "schedule.batch_size.16"),
    ("scaling.num_workers=3", "schedule.batch_size.4"),
    ("optim.lr=0", "optim.lr"),
    ("optim.beta2=1.5", "optim.beta2"),
    ("data.fit=zoom", "data.fit"),
    ("data.resolution=many", "data.resolution"),
    ("schedule.batch_size.16=0", "schedule.batch_size.16"),
    ("schedule.start_resolution=64", "schedule.start_resolution"),
    ("model.latent_dims=5", "model.latent_dims"),
    ("optimizer.lr=0.1", "optimizer"),
    ("eval.num_images=1", "eval.num_images"),
])
def test_impossible_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value).startswith(key), str(e.value)


def test_one_resolution_can_be_overridden_by_its_dotted_key():
    default = load_config(None, [])
    cfg = load_config(None, ["schedule.batch_size.8=8", "schedule.fade_kimg_per_res.16=1"])
    assert default.schedule.batch_size[8] != 8
    assert cfg.schedule.batch_size == {**default.schedule.batch_size, 8: 8}   # the other resolutions are kept
    assert cfg.schedule.fade_kimg_per_res == {**default.schedule.fade_kimg_per_res, 16: 1.0}


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  resolution: [32\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*malformed YAML at line"):
        load_config(bad)


def test_malformed_override_says_how_to_write_it():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["resolution"])


def test_secrets_never_appear_in_the_logged_config():
    cfg = load_config(None, ["storage.access_key_id=AKIASECRET", "storage.secret_access_key=hunter2"])
    text = repr(cfg) + str(config_to_dict(cfg)) + str(flat_params(cfg))
    assert "AKIASECRET" not in text and "hunter2" not in text
    assert cfg.storage.secret_access_key == "hunter2"


def test_a_secret_override_is_kept_verbatim_and_every_printable_form_of_it_is_redacted():
    cfg = load_config(None, ["storage.secret_access_key=0123e4", "storage.access_key_id=[AKIA"])
    assert (cfg.storage.secret_access_key, cfg.storage.access_key_id) == ("0123e4", "[AKIA")   # not YAML-parsed
    assert config_to_dict(cfg)["storage"]["secret_access_key"] == "***"
    assert flat_params(cfg)["storage.access_key_id"] == "***"
    assert config_to_dict(load_config(None, []))["storage"]["secret_access_key"] == ""          # unset stays unset
    argv = ["--set", "storage.secret_access_key=abc/+d", "--set", "data.resolution=64"]
    assert redact_secrets(argv) == ["--set", "storage.secret_access_key=***", "--set", "data.resolution=64"]
    message = "cannot use secret_access_key: 'abc/+d' (key AKIAXYZ)"
    assert redact_secrets(message, ["AKIAXYZ"]) == "cannot use secret_access_key: '***' (key ***)"


def test_a_stage_resolution_without_a_minibatch_gets_the_papers_scaled_like_the_preset():
    assert load_config("tiny.yaml", ["data.resolution=16", "scaling.num_workers=1"]).schedule.batch_size == \
        {4: 16, 8: 16, 16: 16}                                      # tiny.yaml gives 16 = 1/8 of the paper's 128
    assert load_config("tiny.yaml", ["data.resolution=128"]).schedule.batch_size == \
        {4: 16, 8: 16, 16: 16, 32: 8, 64: 4, 128: 4}                # the paper's 64, 32 at 1/8; 2 per worker
    demo = load_config(None, ["data.resolution=128"]).schedule.batch_size   # demo.yaml: 16 at 32 (paper 64)
    assert (demo[32], demo[64], demo[128]) == (16, 8, 4)
    paper = load_config("celeba-hq-1024.yaml", ["schedule.batch_size={4: 128}", "scaling.num_workers=1"])
    assert paper.schedule.batch_size == PAPER_BATCH_SIZE           # nothing given above 4: the paper's table
    odd = load_config("tiny.yaml", ["data.resolution=64", "scaling.num_workers=3", "schedule.batch_size={4: 6}"])
    assert odd.schedule.batch_size == {4: 6, 8: 6, 16: 6, 32: 6, 64: 6}   # whole images per worker, >= 2 each
    assert config_from_dict(config_to_dict(odd, redact=False)) == odd                  # written out, stable


def test_ingest_validates_the_data_settings_but_not_the_training_schedule():
    cfg = load_config(None, ["scaling.num_workers=3"], check=validate_data)   # 16 is not divisible by 3
    assert cfg.scaling.num_workers == 3
    with pytest.raises(ConfigError, match="data.fit"):
        load_config(None, ["data.fit=zoom"], check=validate_data)


@pytest.mark.parametrize("argv, resolution", [
    (["--source", "./photos", "--root", "./pggan-data", "--resolution", "128", "--labels", "folders"], 128),
    (["--source", "s3://bucket/dir", "--root", "s3://bucket/out", "--name", "x", "--resolution", "64"], 64),
    (["--source", "./photos", "--resolution", "256", "--set", "scaling.num_workers=3"], 256),
])
def test_ingest_commands_take_any_resolution_whatever_the_training_schedule(argv, resolution):
    import argparse

    from pipelines.ingest import add_args, config_from_args

    parser = argparse.ArgumentParser()
    add_args(parser)
    assert config_from_args(parser.parse_args(argv)).data.resolution == resolution


def test_cli_bad_config_is_one_clear_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  latent_dimm: 3\n")
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "summary", "--config", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.strip().splitlines() if l]
    assert len(lines) == 1 and "model.latent_dimm" in lines[0]
