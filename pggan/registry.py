"""The final generator in the MLflow Model Registry: log it as a model, register a version, move `newest`/`champion`."""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Iterator

import mlflow
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from pggan import serving
from pggan.config import PipelineConfig
from pggan.tracking import TAG_RUN_ID, client_for, redact, resolve_tracking_uri

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "generator"            # Logged model name inside the parent run.
ALIAS_NEWEST = "newest"                 # MLflow reserves "latest".
ALIAS_CHAMPION = "champion"             # Best SWD average so far (lower is better).
TAG_SWD = "swd_avg"                     # Model-version tag the champion comparison reads.


@contextlib.contextmanager
def using_tracking_uri(uri: str | None) -> Iterator[None]:
    """Point MLflow's fluent API (and model loading) at `uri` for the block; None leaves it as it is."""
    if uri is None:
        yield
        return
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


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


def champion_swd(uri: str, model_name: str) -> tuple[str | None, float | None]:
    """(version, swd_avg) of the current champion; (None, None) without one; swd None when it has no score."""
    client = client_for(uri)
    try:
        current = client.get_model_version_by_alias(model_name, ALIAS_CHAMPION)
    except MlflowException:
        return None, None
    try:
        return str(current.version), float(current.tags[TAG_SWD])
    except (KeyError, ValueError):
        return str(current.version), None


def promote_if_better(uri: str, model_name: str, version: str, swd_avg: float | None) -> bool:
    """Move `champion` to `version` when its SWD average is lower than the champion's (or there is no champion)."""
    if swd_avg is None or not math.isfinite(swd_avg):
        log.warning("%s version %s has no finite SWD average; `%s` stays where it is", model_name, version,
                    ALIAS_CHAMPION)
        return False
    current, current_swd = champion_swd(uri, model_name)
    if current is not None and current_swd is None:
        log.warning("%s@%s (version %s) has no %s tag to compare with; it stays champion. Tag it or move the "
                    "alias by hand.", model_name, ALIAS_CHAMPION, current, TAG_SWD)
        return False
    if current is not None and not swd_avg < current_swd:
        log.info("%s version %s (SWD %.4g) does not beat champion version %s (SWD %.4g)", model_name, version,
                 swd_avg, current, current_swd)
        return False
    client_for(uri).set_registered_model_alias(model_name, ALIAS_CHAMPION, version)
    return True


def log_and_register_generator(G_ema: torch.nn.Module, cfg: PipelineConfig, parent_id: str,
                               swd_avg: float | None) -> str | None:
    """Log the full-resolution EMA generator on the parent run; with tracking.register, register it under
    tracking.model_name, point `newest` at it and `champion` if its SWD beats the champion's. Returns the
    version (None when registering is off)."""
    uri = resolve_tracking_uri(cfg)
    client = client_for(uri)
    model_uri = log_generator_model(G_ema, uri, parent_id)
    client.set_tag(parent_id, "pggan.model_uri", model_uri)
    if not cfg.tracking.register:
        return None
    run_id = client.get_run(parent_id).data.tags.get(TAG_RUN_ID, "")
    tags = {TAG_SWD: repr(float(swd_avg)) if swd_avg is not None else "nan", TAG_RUN_ID: run_id,
            "pggan.resolution": str(G_ema.resolution), "pggan.dataset": redact(cfg.data.name or cfg.data.source)}
    name = cfg.tracking.model_name
    version = register_version(uri, name, model_uri, tags)
    client.set_registered_model_alias(name, ALIAS_NEWEST, version)
    champion = promote_if_better(uri, name, version, swd_avg)
    client.set_tag(parent_id, "pggan.model_version", f"{name}/{version}")
    client.set_tag(parent_id, "pggan.champion", str(champion).lower())
    return version
