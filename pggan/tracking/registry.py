"""The final generator in the MLflow Model Registry: log it as a model, register a version, move `newest`/`champion`."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping

import mlflow
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from pggan.config import PipelineConfig
from pggan.tracking import serving
from pggan.tracking.client import client_for, redact, resolve_tracking_uri, using_tracking_uri
from pggan.tracking.runs import TAG_RUN_ID

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "generator"            # Logged model name inside the parent run.
ALIAS_NEWEST = "newest"                 # MLflow reserves "latest".
ALIAS_CHAMPION = "champion"             # Best SWD average among versions evaluated alike (lower is better).
TAG_SWD = "swd_avg"                     # Model-version tags: the final stage's SWD average and ratio ...
TAG_RATIO = "swd_ratio"
TAG_DATASET = "pggan.dataset"           # ... and what makes two scores comparable: the data set (its name),
TAG_RESOLUTION = "pggan.resolution"     # the resolution evaluated at,
TAG_EVAL_IMAGES = "pggan.eval_num_images"   # the images per set (reals = fakes) and
TAG_EVAL_SEED = "pggan.eval_seed"       # the evaluation seed (sample, latents and SWD).
PROTOCOL_TAGS = (TAG_DATASET, TAG_RESOLUTION, TAG_EVAL_IMAGES, TAG_EVAL_SEED)


@dataclass(frozen=True)
class Registration:
    """What registering the final generator did: its version (None when tracking.register is off), whether
    `champion` moved to it, and why (one line for the run's output)."""
    version: str | None
    champion: bool = False
    reason: str = ""


def log_generator_model(G: torch.nn.Module, uri: str, run_id: str, name: str = MODEL_ARTIFACT) -> str:
    """Log G (pytorch + serving pyfunc flavours, signature, input example) under run `run_id`; returns its URI."""
    client = client_for(uri)
    # Created here, in the run's experiment: Model.log without an active run would file it under experiment 0.
    logged = client.create_logged_model(client.get_run(run_id).info.experiment_id, name=name, source_run_id=run_id)
    with using_tracking_uri(uri):
        info = Model.log(None, name=name, flavor=serving, run_id=run_id, model_id=logged.model_id, generator=G,
                         serialization_format=serving.SERIALIZATION)
    return info.model_uri


def register_version(uri: str, model_name: str, model_uri: str, tags: dict[str, str]) -> str:
    """A new version of `model_name` (created if needed) from a logged model; returns the version number."""
    with using_tracking_uri(uri):
        version = mlflow.register_model(model_uri, model_name, tags=tags)
    return str(version.version)


def protocol_tags(cfg: PipelineConfig, resolution: int, metrics: Mapping[str, Any]) -> dict[str, str]:
    """The version tags that say how its score was measured: data set name, resolution, images per set, seed.
    `metrics` is the final stage's evaluation (run.json); an older one without num_reals has num_images."""
    from pggan.dataset import dataset_url

    num = metrics.get("num_reals", metrics.get("num_images"))
    return {TAG_DATASET: redact(dataset_url(cfg).rstrip("/").rsplit("/", 1)[-1]),
            TAG_RESOLUTION: str(int(metrics.get("resolution", resolution))),
            TAG_EVAL_IMAGES: str(int(num)) if num is not None else "",
            TAG_EVAL_SEED: str(int(metrics.get("seed", cfg.eval.seed)))}


def describe(tags: Mapping[str, str]) -> str:
    """'synthetic-2000-64-s0-32 at 32x32, 256 images, seed 0' from a version's tags."""
    res = tags.get(TAG_RESOLUTION) or "?"
    return (f"{tags.get(TAG_DATASET) or '?'} at {res}x{res}, {tags.get(TAG_EVAL_IMAGES) or '?'} images, "
            f"seed {tags.get(TAG_EVAL_SEED) or '?'}")


def score(tags: Mapping[str, str]) -> float | None:
    """A version's SWD average from its tags; None when it has none (or not a finite number)."""
    try:
        value = float(tags[TAG_SWD])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) else None


def champion_decision(model_name: str, version: str, tags: Mapping[str, str],
                      champion: tuple[str, Mapping[str, str]] | None) -> tuple[bool, str]:
    """Whether `champion` moves to `version` (tags: its TAG_SWD and PROTOCOL_TAGS), and why, in one line.

    The rule: the first scored version becomes champion; after that a version takes the alias only from a
    champion evaluated alike (the same PROTOCOL_TAGS) with a lower SWD average. A champion evaluated otherwise
    (another data set, resolution, evaluation size or seed, or no such tags) keeps the alias: SWDs measured
    differently do not compare. Use a tracking.model_name per data set and resolution, or move it by hand.
    """
    new = score(tags)
    if new is None:
        return False, (f"{model_name}@{ALIAS_CHAMPION} not moved: version {version} has no finite SWD average "
                       f"({TAG_SWD}={tags.get(TAG_SWD)!r})")
    if champion is None:
        return True, (f"{model_name}@{ALIAS_CHAMPION} -> version {version} (SWD {new:.4g}, {describe(tags)}): "
                      "the model had no champion")
    current, current_tags = champion
    differ = [k.removeprefix("pggan.") for k in PROTOCOL_TAGS if current_tags.get(k) != tags.get(k)]
    if differ:
        return False, (f"{model_name}@{ALIAS_CHAMPION} stays at version {current}: it was evaluated on "
                       f"{describe(current_tags)}, version {version} on {describe(tags)} (different "
                       f"{', '.join(differ)}), and only like is compared with like. Register other data or "
                       "resolutions under another tracking.model_name, or move the alias by hand")
    best = score(current_tags)
    if best is None:
        return False, (f"{model_name}@{ALIAS_CHAMPION} stays at version {current}: it has no {TAG_SWD} tag to "
                       "compare with; tag it or move the alias by hand")
    if new < best:
        return True, (f"{model_name}@{ALIAS_CHAMPION} -> version {version}: SWD {new:.4g} beats version {current}'s "
                      f"{best:.4g} ({describe(tags)})")
    return False, (f"{model_name}@{ALIAS_CHAMPION} stays at version {current}: its SWD {best:.4g} is not beaten by "
                   f"version {version}'s {new:.4g} ({describe(tags)})")


def current_champion(uri: str, model_name: str) -> tuple[str, dict[str, str]] | None:
    """(version, tags) of the model's champion; None without one."""
    try:
        current = client_for(uri).get_model_version_by_alias(model_name, ALIAS_CHAMPION)
    except MlflowException:
        return None
    return str(current.version), dict(current.tags)


def promote_if_better(uri: str, model_name: str, version: str, tags: Mapping[str, str]) -> tuple[bool, str]:
    """Move `champion` to `version` when champion_decision says so; returns (moved, why)."""
    moved, reason = champion_decision(model_name, version, tags, current_champion(uri, model_name))
    if moved:
        client_for(uri).set_registered_model_alias(model_name, ALIAS_CHAMPION, version)
    log.info(reason)
    return moved, reason


def log_and_register_generator(G_ema: torch.nn.Module, cfg: PipelineConfig, parent_id: str,
                               metrics: Mapping[str, Any] | None) -> Registration:
    """Log the full-resolution EMA generator on the parent run; with tracking.register, register it under
    tracking.model_name with its score and evaluation protocol as tags (`metrics`: the final stage's evaluation),
    point `newest` at it and `champion` when champion_decision says so."""
    uri = resolve_tracking_uri(cfg)
    client = client_for(uri)
    model_uri = log_generator_model(G_ema, uri, parent_id)
    client.set_tag(parent_id, "pggan.model_uri", model_uri)
    if not cfg.tracking.register:
        return Registration(None)
    metrics = metrics or {}
    run_id = client.get_run(parent_id).data.tags.get(TAG_RUN_ID, "")
    tags = {TAG_SWD: repr(float(metrics.get("swd_avg", math.nan))),
            TAG_RATIO: repr(float(metrics.get("swd_ratio", math.nan))), TAG_RUN_ID: run_id,
            **protocol_tags(cfg, G_ema.resolution, metrics)}
    name = cfg.tracking.model_name
    version = register_version(uri, name, model_uri, tags)
    client.set_registered_model_alias(name, ALIAS_NEWEST, version)
    champion, reason = promote_if_better(uri, name, version, tags)
    client.set_tag(parent_id, "pggan.model_version", f"{name}/{version}")
    client.set_tag(parent_id, "pggan.champion", str(champion).lower())
    client.set_tag(parent_id, "pggan.champion_reason", reason)
    return Registration(version, champion, reason)
