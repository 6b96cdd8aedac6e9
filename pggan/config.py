"""Typed, frozen pipeline configuration: YAML in, dotted `--set` overrides, validation that names the key."""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from pggan.resolutions import is_resolution, resolutions
from pggan.secret_keys import is_secret, redact_secrets
from pggan.typed_yaml import ConfigError, build_dataclass

# The shipped YAML presets, package data of pggan (pipelines/configs in a checkout links here); load_config looks
# a bare name up among them.
PRESETS = resources.files("pggan") / "presets"
DEFAULT_PRESET = "demo.yaml"
# The official single-GPU preset's minibatch per resolution (paper's code, config.py `sched.minibatch_dict`); a
# resolution that schedule.batch_size leaves out gets it scaled like the preset's own values (default_batch_size).
PAPER_BATCH_SIZE = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4, 1024: 4}


@dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"            # Image folder/bucket URL, or "synthetic" for the built-in demo set.
    name: str = ""                       # Dataset name under {root}/datasets/; "" derives it from the source.
    resolution: int = 32                 # Target (final) resolution, a power of two >= 4.
    synthetic_count: int = 2000          # Demo set: number of images.
    synthetic_size: int = 64             # Demo set: side of each image.
    labels: str = "none"                 # "none" or "folders" (label = sub-folder name).
    fit: str = "crop"                    # Non-square images: "crop" (centre), "pad" or "stretch".
    background: tuple[int, int, int] = (255, 255, 255)  # Composited under transparent images.
    min_side: int = 0                    # Skip images whose shorter side is below this (0 = the target resolution).
    max_pixels: int = 178_956_970        # Decompression-bomb limit (PIL's default x2).
    mirror: bool = False                 # Training: flip each real image left-right with p 1/2 (official CelebA-HQ).


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = 512                # Latent vector size (Table 2: 512).
    fmap_base: int = 8192                # Feature maps at 2**k: min(fmap_base / 2**((k-1)*decay), fmap_max).
    fmap_decay: float = 1.0
    fmap_max: int = 512
    mbstd_group_size: int = 4            # Minibatch-stddev group size (min(group, N) at run time).
    # StyleGAN (Karras et al. 2019): arch "stylegan" swaps G for the style-based one (D gets blurred down-sampling).
    arch: str = "pggan"                  # "pggan" (Table 2 networks) or "stylegan".
    mapping_layers: int = 8              # StyleGAN: dense layers of the mapping network z -> w.
    mapping_lr_mul: float = 0.01         # StyleGAN: learning-rate multiplier of the mapping network.
    style_mixing_prob: float = 0.9       # StyleGAN: share of training minibatches with two w's (0 = off).
    w_avg_beta: float = 0.995            # StyleGAN: EMA decay of the tracked mean w (for truncation).
    truncation_cutoff: int = 8           # StyleGAN: truncation applies to style layers below this (0 = all).

    def channels(self, resolution: int) -> int:
        """Feature maps of the blocks at `resolution` (the paper's nf(stage))."""
        k = int(math.log2(resolution))
        return int(min(self.fmap_base / 2 ** ((k - 1) * self.fmap_decay), self.fmap_max))


@dataclass(frozen=True)
class ScheduleConfig:
    start_resolution: int = 4            # First stage; it has no fade-in.
    fade_kimg: float = 600.0             # Images (thousands) of fade-in per resolution.
    stabilize_kimg: float = 600.0        # Images (thousands) of stabilization per resolution.
    fade_kimg_per_res: dict[int, float] = field(default_factory=dict)       # Per-resolution overrides.
    stabilize_kimg_per_res: dict[int, float] = field(default_factory=dict)
    batch_size: dict[int, int] = field(default_factory=lambda: dict(PAPER_BATCH_SIZE))  # Global minibatch; a
    # stage resolution left out gets default_batch_size (the paper's table scaled like the given values).
    lr_per_res: dict[int, float] = field(default_factory=dict)              # Overrides optim.lr.
    ckpt_kimg: float = 50.0              # Checkpoint every this many kimg (and at each phase end).
    tick_kimg: float = 10.0              # Log metrics / sample grids every this many kimg.


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 0.001
    beta1: float = 0.0
    beta2: float = 0.99
    eps: float = 1e-8
    gp_lambda: float = 10.0              # WGAN-GP weight.
    gp_target: float = 1.0               # WGAN-GP gradient-norm target.
    drift: float = 0.001                 # epsilon_drift * D(real)^2.
    aux_weight: float = 1.0              # Conditional runs (data.labels=folders): weight of the AC-GAN class
    #                                      cross-entropy in the D and G losses (official cond_weight).
    ema_beta: float = 0.999              # Generator EMA decay per step.
    loss: str = "wgan-gp"                # "wgan-gp" (the paper's) or "logistic-r1" (non-saturating + R1, StyleGAN).
    r1_gamma: float = 10.0               # logistic-r1: weight of (gamma/2) * ||grad_x D(real)||^2.
    seed: int = 0


@dataclass(frozen=True)
class ScalingConfig:
    num_workers: int = 2                 # Ray Train (DDP) workers per stage.
    use_gpu: bool = False
    cpus_per_worker: float = 0.5         # Fractional on small machines so Ray Data still gets CPUs.
    max_failures: int = 3                # Worker-group restarts per stage, each from the newest checkpoint.
    mixed_precision: str = "bf16"        # "bf16" or "none"; only used on GPU, the gradient penalty stays fp32.
    ray_address: str = ""                # "" = RAY_ADDRESS or a private local cluster; else a cluster address.
    num_cpus: int = 0                    # Logical CPUs for a local cluster (0 = max(4, machine cores)).


@dataclass(frozen=True)
class StorageConfig:
    root: str = "./pggan-data"           # URL under which datasets/, runs/ and sources/ live.
    endpoint_url: str = ""               # S3-compatible endpoint; "" = AWS_ENDPOINT_URL or AWS.
    region: str = ""                     # "" = AWS_REGION.
    access_key_id: str = field(default="", repr=False)      # "" = AWS_ACCESS_KEY_ID. Never logged.
    secret_access_key: str = field(default="", repr=False)  # "" = AWS_SECRET_ACCESS_KEY. Never logged.


@dataclass(frozen=True)
class TrackingConfig:
    uri: str = ""                        # MLflow tracking URI; "" = sqlite:///{root}/mlflow.db (local roots).
    experiment: str = "pggan"
    model_name: str = "pggan"            # Registered model name.
    register: bool = True                # Log and register the final EMA generator.


@dataclass(frozen=True)
class EvalConfig:
    num_images: int = 1000               # Generated (and real) images per stage-end evaluation.
    seed: int = 0
    grid_size: int = 8                   # Sample grids are grid_size x grid_size.


@dataclass(frozen=True)
class PipelineConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def replace(self, **sections: Any) -> "PipelineConfig":
        return dataclasses.replace(self, **sections)


# ----------------------------------------------------------------------------------------------------------------
# Building from plain data.

def config_from_dict(data: Mapping[str, Any], check: Callable[[PipelineConfig], None] | None = None
                     ) -> PipelineConfig:
    """Build a PipelineConfig from nested plain data (as loaded from YAML), the stage resolutions' missing
    minibatches filled in (with_default_batch_sizes), and validate it (`check`, default: validate everything)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping of sections at the top level, got {type(data).__name__}")
    cfg = with_default_batch_sizes(build_dataclass(PipelineConfig, data, ""))
    (check or validate)(cfg)
    return cfg


def default_batch_size(given: Mapping[int, int], res: int, num_workers: int) -> int:
    """The global minibatch at `res` when schedule.batch_size (`given`) has none: PAPER_BATCH_SIZE[res] scaled by
    the given value's ratio to the paper's at the nearest given resolution below `res` (else above; no values:
    the paper's own), rounded to a multiple of num_workers, at least two images per worker (minibatch stddev
    needs a group of two; validate refuses one). E.g. tiny.yaml's {4: 16, 8: 16} (1/8 of the paper's 128) gives
    16 at 16x16, 8 at 32x32, 4 at 64x64."""
    def paper(r: int) -> int:
        return PAPER_BATCH_SIZE[min(max(r, 4), 1024)]

    below, above = [r for r in given if r < res], [r for r in given if r > res]
    anchor = max(below) if below else min(above) if above else None
    scale = given[anchor] / paper(anchor) if anchor is not None else 1.0
    workers = max(1, num_workers)
    return workers * max(2, round(paper(res) * scale / workers))


def with_default_batch_sizes(cfg: PipelineConfig) -> PipelineConfig:
    """`cfg` with a minibatch for every stage resolution (start_resolution .. data.resolution) that
    schedule.batch_size leaves out (default_batch_size); written out, so run.json shows what was used."""
    s, top = cfg.schedule, cfg.data.resolution
    if not (is_resolution(s.start_resolution) and is_resolution(top)
            and all(isinstance(r, int) for r in s.batch_size)):
        return cfg                                             # validate names the bad key
    missing = [r for r in resolutions(top, s.start_resolution) if r not in s.batch_size]
    if not missing:
        return cfg
    filled = dict(s.batch_size)
    for r in missing:
        filled[r] = default_batch_size(s.batch_size, r, cfg.scaling.num_workers)
    return cfg.replace(schedule=dataclasses.replace(s, batch_size=dict(sorted(filled.items()))))


def config_to_dict(cfg: PipelineConfig, *, redact: bool = True) -> dict[str, Any]:
    """Plain nested dict of the config (YAML/JSON-able); secrets are blanked unless redact=False."""
    out = dataclasses.asdict(cfg)
    for section in out.values():
        for k, v in section.items():
            if isinstance(v, tuple):
                section[k] = list(v)
    return redact_secrets(out) if redact else out


def flat_params(cfg: PipelineConfig) -> dict[str, str]:
    """`section.key -> str(value)` for experiment trackers (secrets redacted)."""
    return {f"{s}.{k}": str(v) for s, sec in config_to_dict(cfg).items() for k, v in sec.items()}


# ----------------------------------------------------------------------------------------------------------------
# Overrides and loading.

def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings (values parsed as YAML) to nested plain data, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. --set data.resolution=64")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) < 2 or not all(parts):
            raise ConfigError(f"--set {redact_secrets(item)!r}: expected section.key=value, e.g. --set "
                              "schedule.fade_kimg=2")
        try:
            value = raw if is_secret(key.strip()) else yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({e.__class__.__name__})") from None
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p} is not a section")
        node[parts[-1]] = value
    return data


def preset_names() -> list[str]:
    """The shipped presets' file names: celeba-hq-1024.yaml, demo.yaml, tiny.yaml."""
    return sorted(p.name for p in PRESETS.iterdir() if p.name.endswith(".yaml"))


def load_config(path: str | os.PathLike | None = None, overrides: Iterable[str] = (),
                check: Callable[[PipelineConfig], None] | None = None) -> PipelineConfig:
    """Load a YAML config file, or the preset of that name when no such file exists (default: the demo preset),
    apply overrides, validate (`check`: what the caller needs, e.g. validate_data for ingest; default: everything)."""
    file = Path(path) if path is not None else PRESETS / DEFAULT_PRESET
    if path is not None and not file.exists() and file.name == str(path) and (PRESETS / file.name).is_file():
        file = PRESETS / file.name
    where = str(file)
    try:
        text = file.read_text()
    except OSError as e:
        raise ConfigError(f"config file {where!r}: cannot read it ({e.strerror}); give a YAML file or a preset's "
                          f"name: {', '.join(preset_names())}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config file {where!r}: malformed YAML{at}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {where!r}: expected a mapping of sections, got {type(data).__name__}")
    return config_from_dict(apply_overrides(data, overrides), check)


# ----------------------------------------------------------------------------------------------------------------
# Validation: impossible values are errors that name the key.

def _check(ok: bool, key: str, value: Any, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {why}, got {value!r}")


def validate_data(cfg: PipelineConfig) -> None:
    """What ingest needs: the data.* settings and storage.root (not the training schedule)."""
    d = cfg.data
    _check(is_resolution(d.resolution), "data.resolution", d.resolution, "must be a power of two >= 4")
    _check(d.labels in ("none", "folders"), "data.labels", d.labels, "must be 'none' or 'folders'")
    _check(d.fit in ("crop", "pad", "stretch"), "data.fit", d.fit, "must be 'crop', 'pad' or 'stretch'")
    _check(all(0 <= c <= 255 for c in d.background), "data.background", list(d.background),
           "must be three values in 0..255")
    _check(d.source != "", "data.source", d.source, "must be an image folder/bucket URL or 'synthetic'")
    _check(d.synthetic_count >= 1, "data.synthetic_count", d.synthetic_count, "must be >= 1")
    _check(d.synthetic_size >= 4, "data.synthetic_size", d.synthetic_size, "must be >= 4")
    _check(d.min_side >= 0, "data.min_side", d.min_side, "must be >= 0")
    _check(d.max_pixels > 0, "data.max_pixels", d.max_pixels, "must be > 0")
    _check(cfg.storage.root != "", "storage.root", cfg.storage.root, "must be a path or URL (file://, s3://, ...)")


ARCHS = ("pggan", "stylegan")
LOSSES = ("wgan-gp", "logistic-r1")


def validate_style(cfg: PipelineConfig) -> None:
    """model.arch, optim.loss and the StyleGAN settings."""
    m, o = cfg.model, cfg.optim
    _check(m.arch in ARCHS, "model.arch", m.arch, f"must be one of {', '.join(ARCHS)}")
    _check(o.loss in LOSSES, "optim.loss", o.loss, f"must be one of {', '.join(LOSSES)}")
    _check(o.r1_gamma >= 0, "optim.r1_gamma", o.r1_gamma, "must be >= 0")
    _check(m.mapping_layers >= 1, "model.mapping_layers", m.mapping_layers, "must be >= 1")
    _check(m.mapping_lr_mul > 0, "model.mapping_lr_mul", m.mapping_lr_mul, "must be > 0")
    _check(0 <= m.style_mixing_prob <= 1, "model.style_mixing_prob", m.style_mixing_prob, "must be in [0, 1]")
    _check(0 <= m.w_avg_beta <= 1, "model.w_avg_beta", m.w_avg_beta, "must be in [0, 1] (1 = never updated)")
    _check(m.truncation_cutoff >= 0, "model.truncation_cutoff", m.truncation_cutoff, "must be >= 0 (0 = all layers)")


def validate(cfg: PipelineConfig) -> None:
    """Every setting (what a training run needs)."""
    validate_data(cfg)
    d, m, s, o, sc, t, e = cfg.data, cfg.model, cfg.schedule, cfg.optim, cfg.scaling, cfg.tracking, cfg.eval
    _check(m.latent_dim >= 1, "model.latent_dim", m.latent_dim, "must be >= 1")
    _check(m.fmap_base >= 1, "model.fmap_base", m.fmap_base, "must be >= 1")
    _check(m.fmap_max >= 1, "model.fmap_max", m.fmap_max, "must be >= 1")
    _check(m.fmap_decay >= 0, "model.fmap_decay", m.fmap_decay, "must be >= 0")
    _check(m.channels(d.resolution) >= 1, "model.fmap_base", m.fmap_base,
           f"gives 0 feature maps at {d.resolution}x{d.resolution}; raise it")
    _check(m.mbstd_group_size >= 1, "model.mbstd_group_size", m.mbstd_group_size, "must be >= 1")
    validate_style(cfg)

    _check(is_resolution(s.start_resolution) and s.start_resolution <= d.resolution, "schedule.start_resolution",
           s.start_resolution, f"must be a power of two between 4 and data.resolution ({d.resolution})")
    _check(s.fade_kimg >= 0, "schedule.fade_kimg", s.fade_kimg, "must be >= 0")
    _check(s.stabilize_kimg >= 0, "schedule.stabilize_kimg", s.stabilize_kimg, "must be >= 0")
    for name in ("fade_kimg_per_res", "stabilize_kimg_per_res", "batch_size", "lr_per_res"):
        for res, v in getattr(s, name).items():
            _check(is_resolution(res), f"schedule.{name}", res, "keys must be resolutions (powers of two >= 4)")
            _check(v > 0 if name in ("batch_size", "lr_per_res") else v >= 0, f"schedule.{name}.{res}", v,
                   "must be > 0" if name in ("batch_size", "lr_per_res") else "must be >= 0")
    _check(s.ckpt_kimg > 0, "schedule.ckpt_kimg", s.ckpt_kimg, "must be > 0")
    _check(s.tick_kimg > 0, "schedule.tick_kimg", s.tick_kimg, "must be > 0")
    for res in resolutions(d.resolution, s.start_resolution):
        _check(res in s.batch_size, "schedule.batch_size", sorted(s.batch_size),
               f"has no minibatch for resolution {res}; add schedule.batch_size.{res}")
        b = s.batch_size[res]
        _check(b % sc.num_workers == 0, f"schedule.batch_size.{res}", b,
               f"must be divisible by scaling.num_workers ({sc.num_workers})")
        _check(b >= sc.num_workers, f"schedule.batch_size.{res}", b,
               f"must be at least scaling.num_workers ({sc.num_workers})")
        _check(m.mbstd_group_size <= 1 or b >= 2 * sc.num_workers, f"schedule.batch_size.{res}", b,
               f"gives 1 image per worker (scaling.num_workers={sc.num_workers}), where minibatch stddev is a "
               "constant feature; use at least 2 per worker (raise it or lower scaling.num_workers)")

    _check(o.lr > 0, "optim.lr", o.lr, "must be > 0")
    _check(0 <= o.beta1 < 1, "optim.beta1", o.beta1, "must be in [0, 1)")
    _check(0 <= o.beta2 < 1, "optim.beta2", o.beta2, "must be in [0, 1)")
    _check(o.eps > 0, "optim.eps", o.eps, "must be > 0")
    _check(o.gp_lambda >= 0, "optim.gp_lambda", o.gp_lambda, "must be >= 0")
    _check(o.gp_target > 0, "optim.gp_target", o.gp_target, "must be > 0")
    _check(o.drift >= 0, "optim.drift", o.drift, "must be >= 0")
    # D never sees the label (AC-GAN): at weight 0 nothing makes G follow it.
    _check(math.isfinite(o.aux_weight) and o.aux_weight > 0, "optim.aux_weight", o.aux_weight,
           "must be a finite number > 0 (the class loss weight of conditional runs; at 0 G ignores its labels)")
    _check(0 <= o.ema_beta < 1, "optim.ema_beta", o.ema_beta, "must be in [0, 1)")

    _check(sc.num_workers >= 1, "scaling.num_workers", sc.num_workers, "must be >= 1")
    _check(sc.cpus_per_worker > 0, "scaling.cpus_per_worker", sc.cpus_per_worker, "must be > 0")
    _check(sc.max_failures >= 0, "scaling.max_failures", sc.max_failures, "must be >= 0")
    _check(sc.mixed_precision in ("bf16", "none"), "scaling.mixed_precision", sc.mixed_precision,
           "must be 'bf16' or 'none'")
    _check(sc.num_cpus >= 0, "scaling.num_cpus", sc.num_cpus, "must be >= 0")

    _check(t.experiment != "", "tracking.experiment", t.experiment, "must not be empty")
    _check(t.model_name != "", "tracking.model_name", t.model_name, "must not be empty")
    _check(e.num_images >= 2, "eval.num_images", e.num_images, "must be >= 2 (MS-SSIM needs pairs)")
    _check(e.grid_size >= 1, "eval.grid_size", e.grid_size, "must be >= 1")
