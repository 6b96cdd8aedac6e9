"""model.arch / optim.loss and the StyleGAN settings: defaults keep PGGAN, presets load, bad values name the key."""
from __future__ import annotations

import pytest

from pggan.config import ConfigError, config_from_dict, config_to_dict, load_config


def test_defaults_are_the_pggan_paper_setup_and_old_configs_still_load() -> None:
    cfg = load_config("tiny.yaml")
    assert (cfg.model.arch, cfg.optim.loss) == ("pggan", "wgan-gp")
    old = config_to_dict(cfg, redact=False)                     # as a checkpoint written before these keys
    for key in ("arch", "mapping_layers", "mapping_lr_mul", "style_mixing_prob", "w_avg_beta", "truncation_cutoff"):
        del old["model"][key]
    for key in ("loss", "r1_gamma"):
        del old["optim"][key]
    assert config_from_dict(old) == cfg


@pytest.mark.parametrize("name", ["stylegan-ffhq-1024.yaml", "stylegan-demo.yaml"])
def test_stylegan_presets_load_and_round_trip(name: str) -> None:
    cfg = load_config(name)
    assert (cfg.model.arch, cfg.optim.loss, cfg.optim.r1_gamma) == ("stylegan", "logistic-r1", 10.0)
    assert config_from_dict(config_to_dict(cfg, redact=False)) == cfg


def test_paper_stylegan_preset_has_the_papers_settings() -> None:
    m = load_config("stylegan-ffhq-1024.yaml").model
    assert (m.latent_dim, m.mapping_layers, m.mapping_lr_mul, m.style_mixing_prob, m.w_avg_beta) == \
        (512, 8, 0.01, 0.9, 0.995)
    assert [m.channels(2 ** k) for k in range(2, 11)] == [512, 512, 512, 512, 256, 128, 64, 32, 16]


@pytest.mark.parametrize("override", ["model.arch=pggan", "model.arch=stylegan"])
@pytest.mark.parametrize("loss", ["wgan-gp", "logistic-r1"])
def test_any_arch_with_any_loss(override: str, loss: str) -> None:
    cfg = load_config("tiny.yaml", [override, f"optim.loss={loss}"])
    assert cfg.model.arch == override.split("=")[1] and cfg.optim.loss == loss


@pytest.mark.parametrize("override, key", [
    ("model.arch=stylegan2", "model.arch"),
    ("optim.loss=hinge", "optim.loss"),
    ("optim.r1_gamma=-1", "optim.r1_gamma"),
    ("model.mapping_layers=0", "model.mapping_layers"),
    ("model.mapping_lr_mul=0", "model.mapping_lr_mul"),
    ("model.style_mixing_prob=1.5", "model.style_mixing_prob"),
    ("model.w_avg_beta=-0.1", "model.w_avg_beta"),
    ("model.truncation_cutoff=-1", "model.truncation_cutoff"),
])
def test_impossible_style_values_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        load_config("tiny.yaml", [override])
