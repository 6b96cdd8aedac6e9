"""The training state as plain state_dicts: capture, atomic save with a sha256, verified `weights_only=True` load.

A checkpoint is a directory holding `state.pt` (torch.save of a plain dict) and `meta.json` (written last: its
checksum, resolution, images seen and alpha). A directory without a matching `meta.json` is not a checkpoint.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tempfile
from typing import Any, Mapping

import numpy as np
import torch

from pggan import storage as st
from pggan.config import PipelineConfig, StorageConfig, config_from_dict, config_to_dict
from pggan.labels import attach_class_names
from pggan.nn import Generator, make_discriminator, make_generator
from pggan.nn.factory import generator_class

FORMAT_VERSION = 1
STATE_FILE = "state.pt"
META_FILE = "meta.json"
DIR_PREFIX = "nimg-"                    # checkpoint folders of a stage: nimg-0000012345 (images seen)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or corrupt."""


# ----------------------------------------------------------------------------------------------------------------
# Random number generator states (plain values, loadable with weights_only=True).

def capture_rng() -> dict[str, Any]:
    """This process's torch (CPU and CUDA), numpy and python RNG states as plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": [version, list(internal), gauss],
    }


def restore_rng(rng: Mapping[str, Any]) -> None:
    """Inverse of capture_rng (CUDA states only where the same number of devices is visible)."""
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    n = rng["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))


# ----------------------------------------------------------------------------------------------------------------
# The state dict.

def _cpu(obj: Any) -> Any:
    """Tensors moved to the CPU, containers rebuilt as plain dicts/lists."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, Mapping):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def training_state(G: torch.nn.Module, D: torch.nn.Module, G_ema: torch.nn.Module,
                   opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer, *, resolution: int,
                   stage_nimg: int, alpha: float, rng: list[dict[str, Any]], config: PipelineConfig,
                   class_names: tuple[str, ...] | list[str] = ()) -> dict:
    """The full state of a stage as plain values. `rng` holds one capture_rng() per rank; `class_names` are a
    conditional run's classes in index order ([] when unconditional)."""
    return {
        "format_version": FORMAT_VERSION,
        "G": _cpu(G.state_dict()), "D": _cpu(D.state_dict()), "G_ema": _cpu(G_ema.state_dict()),
        "opt_G": _cpu(opt_G.state_dict()), "opt_D": _cpu(opt_D.state_dict()),
        "resolution": int(resolution), "stage_nimg": int(stage_nimg), "alpha": float(alpha),
        "rng": _cpu(rng),
        "config": config_to_dict(config),                      # secrets blanked
        "class_names": [str(name) for name in class_names],
    }


def state_meta(state: Mapping[str, Any], sha256: str) -> dict[str, Any]:
    return {"format_version": state["format_version"], "sha256": sha256, "resolution": state["resolution"],
            "stage_nimg": state["stage_nimg"], "alpha": state["alpha"]}


# ----------------------------------------------------------------------------------------------------------------
# Save and load.

def _write_atomic_local(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(local_dir: str, state: Mapping[str, Any]) -> dict[str, Any]:
    """Write state.pt then meta.json (with its sha256) into a local directory, each atomically; returns meta."""
    os.makedirs(local_dir, exist_ok=True)
    buf = io.BytesIO()
    torch.save(dict(state), buf)
    data = buf.getvalue()
    meta = state_meta(state, hashlib.sha256(data).hexdigest())
    _write_atomic_local(os.path.join(local_dir, STATE_FILE), data)
    _write_atomic_local(os.path.join(local_dir, META_FILE), (json.dumps(meta, indent=2) + "\n").encode())
    return meta


def read_meta(dir_or_url: str, storage: StorageConfig | None = None) -> dict[str, Any]:
    """The checkpoint's meta.json (raises CheckpointError when it has none: incomplete or not a checkpoint)."""
    meta = st.read_json(st.join(dir_or_url, META_FILE), storage)
    if meta is None:
        raise CheckpointError(f"{dir_or_url}: no {META_FILE}; this is not a complete pggan checkpoint "
                              "(interrupted while saving, or the wrong folder)")
    return meta


def load_checkpoint(dir_or_url: str, storage: StorageConfig | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and verify a checkpoint directory (local path or any storage URL) with torch.load(weights_only=True)."""
    meta = read_meta(dir_or_url, storage)
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{dir_or_url}: checkpoint format {meta.get('format_version')!r}, this code reads "
                              f"format {FORMAT_VERSION}; use the pggan version that wrote it")
    try:
        data = st.read_bytes(st.join(dir_or_url, STATE_FILE), storage)
    except FileNotFoundError:
        raise CheckpointError(f"{dir_or_url}: {STATE_FILE} is missing") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["sha256"]:
        raise CheckpointError(f"{dir_or_url}: {STATE_FILE} is corrupt (sha256 {digest[:12]}..., expected "
                              f"{meta['sha256'][:12]}...); resume from an earlier checkpoint")
    return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)


def dir_name(nimg: int) -> str:
    """The folder name of a stage's checkpoint after `nimg` images: sorts by images seen."""
    return f"{DIR_PREFIX}{int(nimg):010d}"


def list_checkpoints(stage_url: str, storage: StorageConfig | None = None) -> list[tuple[int, str]]:
    """(images seen, URL) of the checkpoint folders under a stage's folder, newest first (complete or not)."""
    fs, path = st.fsspec_filesystem(stage_url, storage)
    try:
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    except FileNotFoundError:
        return []
    found = [(int(n[len(DIR_PREFIX):]), st.join(stage_url, n)) for n in names
             if n.startswith(DIR_PREFIX) and n[len(DIR_PREFIX):].isdigit()]
    return sorted(found, reverse=True)


def load_newest(stage_url: str, storage: StorageConfig | None = None, after: int = -1,
                map_location: str | Any = "cpu") -> tuple[str, dict[str, Any]] | None:
    """(URL, state) of the newest complete, verified checkpoint with more than `after` images; None if none.

    A checkpoint written just before a crash may be on storage without Ray having registered it (and one
    interrupted while uploading fails its checksum and is skipped), so resuming looks at storage too.
    """
    for nimg, url in list_checkpoints(stage_url, storage):
        if nimg <= after:
            break
        try:
            return url, load_checkpoint(url, storage, map_location)
        except CheckpointError:
            continue
    return None


def checkpoint_config(state: Mapping[str, Any]) -> PipelineConfig:
    """The (secret-free) config a checkpoint was trained with."""
    return config_from_dict(state["config"])


def build_generator(state: Mapping[str, Any], which: str = "G_ema") -> Generator:
    """The generator stored in a checkpoint (default: the EMA one, used for samples and metrics), in eval mode:
    of the config's model.arch, conditional on as many classes as its weights hold."""
    model = checkpoint_config(state).model
    num_classes = generator_class(model).classes_in_state_dict(state[which]) or 0
    G = make_generator(model, state["resolution"], num_classes)
    G.load_state_dict(state[which])
    if num_classes and len(state.get("class_names", ())) == num_classes:
        attach_class_names(G, state["class_names"])
    return G.eval().requires_grad_(False)


def build_discriminator(state: Mapping[str, Any]) -> torch.nn.Module:
    """The checkpoint's D (conditional with as many classes as G's weights hold), in eval mode: its auxiliary
    head classifies generated images at the stage end."""
    model = checkpoint_config(state).model
    num_classes = generator_class(model).classes_in_state_dict(state["G"]) or 0
    D = make_discriminator(model, state["resolution"], num_classes)
    D.load_state_dict(state["D"])
    return D.eval().requires_grad_(False)
