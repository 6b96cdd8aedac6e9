"""A schedule sweep as plain values: the search space over schedule keys (parsed and checked before any trial
starts), each trial's config, trial run ids, how many trials fit the cluster, and the best config as YAML."""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import yaml

from pggan.config import ConfigError, PipelineConfig, config_from_dict, config_to_dict
from pggan.schedule import stage_resolutions
from pggan.secret_keys import without_secrets

# What may be searched, and how values are drawn: "kimg" uniform in whole images, "int" uniform in multiples of
# scaling.num_workers (a minibatch must split evenly), "log" log-uniform (learning rates).
SEARCHABLE = {"fade_kimg": "kimg", "stabilize_kimg": "kimg", "fade_kimg_per_res": "kimg",
              "stabilize_kimg_per_res": "kimg", "batch_size": "int", "lr_per_res": "log"}
PER_RES = ("fade_kimg_per_res", "stabilize_kimg_per_res", "batch_size", "lr_per_res")
TRIAL_CPU = 0.01                 # The Tune trial function's own share; the Train workers reserve theirs.
DATA_HEADROOM_CPU = 1.0          # Per trial, for Ray Data read tasks and the stage-end evaluation tasks.
_KIMG_DIGITS = 3                 # kimg values are whole images.


@dataclass(frozen=True)
class Dimension:
    """One searched setting: `key` is a full dotted config key (schedule.fade_kimg_per_res.8), [low, high]."""
    key: str
    low: float
    high: float
    kind: str                    # "kimg", "int" or "log" (see SEARCHABLE)
    step: int = 1                # "int" only: values are multiples of this

    @property
    def fixed(self) -> bool:
        return self.low == self.high

    def describe(self) -> str:
        how = {"kimg": "uniform", "int": f"multiples of {self.step}", "log": "log-uniform"}[self.kind]
        return f"{self.low:g}" if self.fixed else f"{self.low:g}:{self.high:g} {how}"


@dataclass(frozen=True)
class SearchSpace:
    """The searched dimensions; with total_kimg each stage shows that many kimg and stabilize = total - fade."""
    dims: tuple[Dimension, ...]
    total_kimg: float | None = None
    per_res: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"dims": [dataclasses.asdict(d) for d in self.dims], "total_kimg": self.total_kimg,
                "per_res": self.per_res}


# ----------------------------------------------------------------------------------------------------------------
# Parsing and validation (ConfigError naming the flag or key: the CLI exits 2 before any trial starts).

def parse_bounds(flag: str, text: str) -> tuple[float, float]:
    """'LOW:HIGH' (or one value, meaning LOW = HIGH) as two finite floats >= 0 with LOW <= HIGH."""
    parts = str(text).split(":")
    try:
        low, high = (float(parts[0]), float(parts[-1])) if len(parts) in (1, 2) else (math.nan, math.nan)
    except ValueError:
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(f"{flag} {text!r}: expected LOW:HIGH with two numbers, e.g. {flag} 100:600")
    if low < 0 or high < 0:
        raise ConfigError(f"{flag} {text!r}: bounds must be >= 0")
    if low > high:
        raise ConfigError(f"{flag} {text!r}: LOW ({low:g}) is above HIGH ({high:g}); write LOW:HIGH")
    return low, high


def search_key(key: str) -> str:
    """'fade_kimg' or 'schedule.fade_kimg' -> 'schedule.fade_kimg' (the full dotted config key)."""
    key = key.strip()
    return key if key.startswith("schedule.") else f"schedule.{key}"


def check_key(cfg: PipelineConfig, key: str) -> str:
    """The kind of a searchable key; ConfigError naming it when it is unknown or names a resolution not trained."""
    parts = key.split(".")
    name = parts[1] if len(parts) > 1 else ""
    valid = ", ".join(f"schedule.{k}" + (".RES" if k in PER_RES else "") for k in SEARCHABLE)
    if parts[0] != "schedule" or name not in SEARCHABLE or len(parts) != (3 if name in PER_RES else 2):
        raise ConfigError(f"--search {key}: not a searchable key; searchable: {valid}")
    if name in PER_RES:
        stages = stage_resolutions(cfg)
        if not parts[2].isdigit() or int(parts[2]) not in stages:
            raise ConfigError(f"--search {key}: {parts[2]} is not a stage resolution of this config "
                              f"(stages {', '.join(map(str, stages))})")
        if name == "fade_kimg_per_res" and int(parts[2]) == stages[0]:
            raise ConfigError(f"--search {key}: the first stage ({stages[0]}x{stages[0]}) has no fade-in")
    return SEARCHABLE[name]


def default_bounds(value: float) -> tuple[float, float]:
    """Without a range on the command line: half to twice the config's value."""
    return round(value / 2, _KIMG_DIGITS), round(value * 2, _KIMG_DIGITS)


def _phase_dims(cfg: PipelineConfig, phase: str, bounds: tuple[float, float], per_res: bool) -> list[Dimension]:
    """schedule.{phase}_kimg, or one schedule.{phase}_kimg_per_res.R per stage (stages with a fade-in for fades)."""
    if not per_res:
        return [Dimension(f"schedule.{phase}_kimg", *bounds, "kimg")]
    stages = stage_resolutions(cfg)[1:] if phase == "fade" else stage_resolutions(cfg)
    return [Dimension(f"schedule.{phase}_kimg_per_res.{r}", *bounds, "kimg") for r in stages]


def build_space(cfg: PipelineConfig, *, fade: str | None = None, stabilize: str | None = None,
                total: float | None = None, per_res: bool = False, search: Sequence[str] = ()) -> SearchSpace:
    """The search space from the command line's ranges; raises ConfigError naming the flag or key."""
    s = cfg.schedule
    fade_b = parse_bounds("--fade-kimg", fade) if fade is not None else default_bounds(s.fade_kimg)
    if total is not None:
        if not (math.isfinite(total) and total > 0):
            raise ConfigError(f"--total-kimg {total!r}: must be a number > 0")
        if stabilize is not None:
            raise ConfigError("--stabilize-kimg: not with --total-kimg (stabilize = total - fade)")
        if fade is None:
            fade_b = (round(total / 4, _KIMG_DIGITS), round(total * 3 / 4, _KIMG_DIGITS))
        if fade_b[1] > total:
            raise ConfigError(f"--fade-kimg {fade}: HIGH ({fade_b[1]:g}) exceeds --total-kimg ({total:g}); the "
                              "fade-in is part of each stage's images")
    dims = _phase_dims(cfg, "fade", fade_b, per_res)
    if total is None:
        stab_b = parse_bounds("--stabilize-kimg", stabilize) if stabilize is not None \
            else default_bounds(s.stabilize_kimg)
        dims += _phase_dims(cfg, "stabilize", stab_b, per_res)
    dims += [_search_dim(cfg, item) for item in search]
    _check_unique(dims, total, per_res)
    space = SearchSpace(tuple(dims), total, per_res)
    for corner in ("low", "high"):               # every key and value checked by the config's own validation
        try:
            trial_config(cfg, space, {d.key: getattr(d, corner) for d in dims})
        except ConfigError as e:
            raise ConfigError(f"search bounds ({corner} end): {e}") from None
    return space


def _search_dim(cfg: PipelineConfig, item: str) -> Dimension:
    if "=" not in item:
        raise ConfigError(f"--search {item!r}: expected KEY=LOW:HIGH, e.g. --search schedule.lr_per_res.8=1e-4:1e-2")
    raw_key, text = item.split("=", 1)
    key = search_key(raw_key)
    kind = check_key(cfg, key)
    low, high = parse_bounds(f"--search {key}", text)
    step = cfg.scaling.num_workers if kind == "int" else 1
    if kind == "log" and low <= 0:
        raise ConfigError(f"--search {key}={text}: a learning rate range must be above 0 (it is searched "
                          "log-uniformly)")
    if kind == "int" and (low % step or high % step):
        raise ConfigError(f"--search {key}={text}: bounds must be multiples of scaling.num_workers ({step})")
    return Dimension(key, low, high, kind, step)


def _check_unique(dims: Sequence[Dimension], total: float | None, per_res: bool) -> None:
    seen: set[str] = set()
    for d in dims:
        if d.key in seen:
            raise ConfigError(f"--search {d.key}: given twice (it is already searched by --fade-kimg, "
                              "--stabilize-kimg or another --search)")
        seen.add(d.key)
        if total is not None and "stabilize_kimg" in d.key:
            raise ConfigError(f"--search {d.key}: not with --total-kimg (stabilize = total - fade)")
        if per_res and d.key in ("schedule.fade_kimg", "schedule.stabilize_kimg"):
            raise ConfigError(f"--search {d.key}: not with --per-res (each stage's value is searched)")


# ----------------------------------------------------------------------------------------------------------------
# Trials.

def trial_values(space: SearchSpace, sampled: Mapping[str, Any]) -> dict[str, float | int]:
    """What a trial trains with: the sampled values (kimg rounded to whole images, ints as ints) plus, with
    total_kimg, the derived stabilize lengths. Keys are full dotted config keys."""
    out: dict[str, float | int] = {}
    for d in space.dims:
        v = sampled.get(d.key, d.low)
        out[d.key] = int(round(v)) if d.kind == "int" else round(float(v), _KIMG_DIGITS) if d.kind == "kimg" \
            else float(v)
    if space.total_kimg is not None:
        total = space.total_kimg
        for key, v in list(out.items()):
            if key.startswith("schedule.fade_kimg"):
                out[key.replace("fade_kimg", "stabilize_kimg")] = round(total - v, _KIMG_DIGITS)
    return out


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key in nested config data; per-resolution mappings are keyed by int."""
    section, name, *res = key.split(".")
    if res:
        data[section][name] = {**data[section].get(name, {}), int(res[0]): value}
    else:
        data[section][name] = value


def trial_config(base: PipelineConfig, space: SearchSpace, sampled: Mapping[str, Any]) -> PipelineConfig:
    """`base` with the trial's values (validated like any config)."""
    data = config_to_dict(base, redact=False)
    for key, value in trial_values(space, sampled).items():
        _set(data, key, value)
    if space.total_kimg is not None:            # the first stage has no fade-in: it shows the total as stabilize
        _set(data, f"schedule.stabilize_kimg_per_res.{stage_resolutions(base)[0]}", space.total_kimg)
    return config_from_dict(data)


def trial_run_id(sweep: str, index: int) -> str:
    """The trial's pipeline run id: deterministic, so a resumed sweep resumes the same runs."""
    return f"{sweep}-t{index}"


def trial_index(tune_trial_id: str) -> int:
    """Ray Tune trial ids end in the trial's index ('4a1f2_00003' -> 3); it survives Tuner.restore."""
    m = re.search(r"_(\d+)$", tune_trial_id)
    if not m:
        raise ValueError(f"Tune trial id {tune_trial_id!r} does not end in _INDEX")
    return int(m.group(1))


# ----------------------------------------------------------------------------------------------------------------
# Fitting trials to the cluster.

def trial_cpus(cfg: PipelineConfig) -> float:
    """CPUs one trial holds at its peak: its Train workers, one for data/evaluation tasks, the trial function."""
    return cfg.scaling.num_workers * cfg.scaling.cpus_per_worker + DATA_HEADROOM_CPU + TRIAL_CPU


def max_concurrent_trials(cfg: PipelineConfig, cluster_cpus: float, cluster_gpus: float, num_samples: int,
                          requested: int | None = None) -> int:
    """Trials that run at once without their reservations exceeding the cluster (so no Train worker group
    waits on another trial's); with GPUs and several trials, one GPU stays free for evaluations. ConfigError when
    not even one trial fits."""
    sc = cfg.scaling
    need = trial_cpus(cfg)
    fits = int(cluster_cpus // need + 1e-9)
    if sc.use_gpu:
        gpu_fits = int(cluster_gpus // sc.num_workers)
        if gpu_fits > 1 and cluster_gpus - gpu_fits * sc.num_workers < 1:
            gpu_fits -= 1                        # keep a GPU for the stage-end evaluation tasks (1 GPU each)
        fits = min(fits, gpu_fits)
    if fits < 1:
        gpus = f" and {sc.num_workers} GPU(s)" if sc.use_gpu else ""
        raise ConfigError(f"scaling: one trial needs {need:g} CPUs{gpus} (scaling.num_workers {sc.num_workers} x "
                          f"scaling.cpus_per_worker {sc.cpus_per_worker:g} + {DATA_HEADROOM_CPU:g} for data and "
                          f"evaluation) but the cluster has {cluster_cpus:g} CPUs"
                          f"{f' and {cluster_gpus:g} GPUs' if sc.use_gpu else ''}; lower scaling.num_workers or "
                          "scaling.cpus_per_worker, or add nodes")
    if requested is not None:
        if requested < 1:
            raise ConfigError(f"--max-concurrent {requested}: must be >= 1")
        fits = min(fits, requested)
    return max(1, min(fits, num_samples))


# ----------------------------------------------------------------------------------------------------------------
# The result.

def best_config_yaml(cfg: PipelineConfig, header: Sequence[str] = ()) -> str:
    """The full config as YAML that load_config reads (secrets left empty: they come from the environment)."""
    data = config_to_dict(without_secrets(cfg), redact=False)
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    return "".join(f"# {line}\n" for line in header) + text
