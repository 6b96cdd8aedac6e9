"""Checkpoints: everything a stage needs comes back exactly; corrupt or incomplete ones are refused clearly."""
from __future__ import annotations

import json
import os

import pytest
import torch

from pggan.checkpoint import (CheckpointError, build_generator, capture_rng, dir_name, list_checkpoints,
                              load_checkpoint, load_newest, read_meta, restore_rng, save_checkpoint, training_state)
from pggan.config import load_config
from pggan.sampling import sample_latents
from pggan.stage_nets import build_stage
from pggan.train_step import train_step


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny.yaml", ["storage.secret_access_key=hunter2"])


@pytest.fixture(scope="module")
def state(cfg):
    nets = build_stage(cfg.model, cfg.optim, 8, 1e-3, "cpu", init_seed=0)
    train_step(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, torch.rand(4, 3, 8, 8) * 2 - 1, 0.3, cfg)
    return training_state(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, resolution=8, stage_nimg=320,
                          alpha=0.4, rng=[capture_rng(), capture_rng()], config=cfg), nets


def test_a_saved_stage_loads_back_with_weights_optimizers_progress_and_rng(tmp_path, state):
    st, nets = state
    save_checkpoint(str(tmp_path), st)
    back = load_checkpoint(str(tmp_path))                       # weights_only=True inside
    assert back["resolution"] == 8 and back["stage_nimg"] == 320 and back["alpha"] == 0.4
    for key in ("G", "D", "G_ema"):
        for name, t in getattr(nets, key).state_dict().items():
            assert torch.equal(back[key][name], t), (key, name)
    assert torch.equal(back["opt_G"]["state"][0]["exp_avg_sq"], nets.opt_G.state_dict()["state"][0]["exp_avg_sq"])
    assert len(back["rng"]) == 2


def test_restored_rng_replays_the_same_random_numbers(tmp_path, state):
    st, _ = state
    rng = capture_rng()
    expected = torch.randn(5)
    restore_rng(rng)
    assert torch.equal(torch.randn(5), expected)


def test_the_checkpoint_holds_the_config_without_secrets(tmp_path, state):
    st, _ = state
    save_checkpoint(str(tmp_path), st)
    back = load_checkpoint(str(tmp_path))
    assert back["config"]["storage"]["secret_access_key"] == "***"
    assert b"hunter2" not in (tmp_path / "state.pt").read_bytes()


def test_the_ema_generator_is_rebuilt_from_a_checkpoint(tmp_path, state, cfg):
    st, nets = state
    save_checkpoint(str(tmp_path), st)
    G = build_generator(load_checkpoint(str(tmp_path)))
    z = sample_latents(3, cfg.model.latent_dim, seed=1)
    assert torch.equal(G(z), nets.G_ema(z))


def test_a_corrupt_state_file_is_refused_with_its_path(tmp_path, state):
    st, _ = state
    save_checkpoint(str(tmp_path), st)
    data = bytearray((tmp_path / "state.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "state.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(str(tmp_path))


def test_a_folder_without_meta_is_not_a_checkpoint(tmp_path, state):
    st, _ = state
    save_checkpoint(str(tmp_path), st)
    os.remove(tmp_path / "meta.json")
    with pytest.raises(CheckpointError, match="not a complete pggan checkpoint"):
        load_checkpoint(str(tmp_path))


def test_meta_says_where_the_stage_was_without_loading_weights(tmp_path, state):
    st, _ = state
    save_checkpoint(str(tmp_path), st)
    meta = read_meta(str(tmp_path))
    assert (meta["resolution"], meta["stage_nimg"], meta["alpha"]) == (8, 320, 0.4)
    assert json.loads((tmp_path / "meta.json").read_text())["sha256"] == meta["sha256"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]      # nothing half-written left


def test_resume_takes_the_newest_complete_checkpoint_on_storage_skipping_broken_ones(tmp_path, state):
    st, _ = state
    for nimg in (100, 200, 300):
        save_checkpoint(str(tmp_path / dir_name(nimg)), {**st, "stage_nimg": nimg})
    os.remove(tmp_path / dir_name(300) / "meta.json")                         # interrupted upload
    (tmp_path / dir_name(200) / "state.pt").write_bytes(b"truncated")           # corrupt
    (tmp_path / "checkpoint_manager_snapshot.json").write_text("{}")           # Ray's own files are ignored
    assert [n for n, _ in list_checkpoints(str(tmp_path))] == [300, 200, 100]
    url, back = load_newest(str(tmp_path))
    assert back["stage_nimg"] == 100 and url.endswith(dir_name(100))
    assert load_newest(str(tmp_path), after=100) is None
    assert load_newest(str(tmp_path / "missing")) is None
