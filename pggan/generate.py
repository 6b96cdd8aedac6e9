"""Sample a trained generator: load it (models:/ URI or checkpoint), seeded images, grids, latent walks; `pggan generate`."""
from __future__ import annotations

import argparse
import io
import os
import sys
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from pggan import storage as st
from pggan.config import PipelineConfig
from pggan.nn.factory import is_style_generator
from pggan.imaging import encode_png, image_grid, to_uint8
from pggan.sampling import generate, sample_latents, seeded_noise, style_options

MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
MAX_SEED = 2**63 - 1


class GenerateError(ValueError):
    """A generate request that cannot be served (bad source, count or seed); the message says what to do."""


# ----------------------------------------------------------------------------------------------------------------
# Loading.

def is_mlflow_uri(source: str) -> bool:
    return source.startswith(MLFLOW_SCHEMES)


def load_generator(source: str, storage: Any = None, tracking_uri: str | None = None) -> torch.nn.Module:
    """The generator behind `source`: an MLflow model URI (models:/pggan@champion, runs:/..., models:/m-...)
    or a checkpoint directory / URL (its EMA generator). Returned on the CPU in eval mode."""
    if is_mlflow_uri(source):
        return _load_from_mlflow(source, tracking_uri)
    from pggan.checkpoint import CheckpointError, build_generator, load_checkpoint

    try:
        state = load_checkpoint(source, storage)
    except (CheckpointError, FileNotFoundError) as e:
        raise GenerateError(f"{source!r}: not an MLflow model URI (models:/NAME@ALIAS, runs:/ID/PATH) "
                            f"and not a readable checkpoint ({e})") from None
    return build_generator(state)


def _load_from_mlflow(uri: str, tracking_uri: str | None) -> torch.nn.Module:
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException

    from pggan.tracking.client import using_tracking_uri

    try:
        with using_tracking_uri(tracking_uri):
            G = mlflow.pytorch.load_model(uri, map_location="cpu")
    except MlflowException as e:
        where = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "the default tracking URI"
        raise GenerateError(f"{uri!r}: MLflow could not load it from {where} ({e.message}); check the "
                            "model name and alias, and --tracking-uri / MLFLOW_TRACKING_URI") from None
    return G.eval().requires_grad_(False)


def latent_dim_of(G: torch.nn.Module) -> int:
    """The latent size of a pggan Generator (ours carry their ModelConfig)."""
    model = getattr(G, "model", None)
    if model is None or not hasattr(model, "latent_dim"):
        raise GenerateError(f"{type(G).__name__} is not a pggan Generator (no .model.latent_dim); load it with "
                            "pggan.generate.load_generator or mlflow.pytorch.load_model of a pggan model")
    return int(model.latent_dim)


# ----------------------------------------------------------------------------------------------------------------
# Sampling.

def check_request(num: int, seed: int, max_num: int | None = None) -> None:
    if not 1 <= num <= (max_num or num):
        limit = f" and at most {max_num}" if max_num else ""
        raise GenerateError(f"number of images {num}: must be at least 1{limit}")
    if not 0 <= seed <= MAX_SEED:
        raise GenerateError(f"seed {seed}: must be in 0..2**63-1")


def check_style_request(G: torch.nn.Module, psi: float = 1.0, noise_mode: str | None = None) -> dict[str, Any]:
    """G's keyword arguments for psi / noise_mode (StyleGAN only); GenerateError for a PGGAN G or a bad value."""
    if noise_mode not in (None, "const", "random"):
        raise GenerateError(f"noise {noise_mode!r}: expected const or random")
    if not -2.0 <= psi <= 2.0:
        raise GenerateError(f"truncation psi {psi:g}: expected a value in [-2, 2] (1 = none, 0.7 the paper's)")
    try:
        return style_options(G, psi, noise_mode)
    except ValueError as e:
        raise GenerateError(str(e)) from None


def noise_for(G: torch.nn.Module, noise_mode: str | None) -> str | None:
    """Generation's noise: as asked, else const for a StyleGAN G (the same image for the same w), None for PGGAN."""
    return noise_mode or ("const" if is_style_generator(G) else None)


def generate_images(G: torch.nn.Module, num: int, seed: int = 0, batch: int = 64, psi: float = 1.0,
                    noise_mode: str | None = None,
                    labels: Sequence[str | int] | torch.Tensor | None = None) -> np.ndarray:
    """`num` images from the latents of `seed`: uint8 [num, R, R, 3]. The same seed gives the same images (a
    StyleGAN G's random noise is drawn from the seed too). psi (truncation) and noise_mode (const, the default, or
    random): StyleGAN only. A conditional G takes `labels` (class names or indices, one per image, or one for
    all); without, it cycles through its classes (image i is of class i mod K). Labels on an unconditional G are
    refused (one line)."""
    check_request(num, seed)
    check_style_request(G, psi, noise_mode)
    noise_mode = noise_for(G, noise_mode)
    z = sample_latents(num, latent_dim_of(G), seed)              # [num, latent]
    with seeded_noise(G, seed):
        return to_uint8(generate(G, z, batch=batch, psi=psi, noise_mode=noise_mode,
                                 labels=image_labels(G, num, labels)))      # [num, R, R, 3]


def style_mix_images(G: torch.nn.Module, rows: int, cols: int, seed: int = 0, groups: Sequence[str] | None = None,
                     psi: float = 1.0, noise_mode: str | None = None) -> np.ndarray:
    """StyleGAN's style-mixing figure: `cols` column sources along the top, then for each style group (default:
    those G has of coarse, middle, fine) `rows` row sources, each taking the column sources' styles on that
    group's layers. uint8 [(1 + len(groups) * rows) * (1 + cols), R, R, 3], row-major with 1 + cols columns."""
    from pggan.nn.stylegan import STYLE_GROUPS
    from pggan.style_mix import style_layers, style_mix_grid

    check_request(rows * cols, seed)
    check_style_request(G, psi, noise_mode)
    if not is_style_generator(G):
        raise GenerateError(f"--style-mix needs a StyleGAN generator (model.arch: stylegan); this one is a "
                            f"{type(G).__name__}")
    try:
        groups = list(groups) if groups else [g for g in STYLE_GROUPS if _has_layers(G, g, style_layers)]
        z = sample_latents(rows + cols, latent_dim_of(G), seed)               # [rows + cols, latent]
        parts = []
        with seeded_noise(G, seed):
            for i, group in enumerate(groups):
                grid = style_mix_grid(G, z[:rows], z[rows:], group, psi=psi, noise_mode=noise_mode or "const")
                parts.append(grid if i == 0 else grid[1 + cols:])            # the column sources' row once
    except ValueError as e:
        raise GenerateError(str(e)) from None
    return to_uint8(torch.cat(parts))                                         # [(1 + g*rows) * (1 + cols), R, R, 3]


def _has_layers(G: torch.nn.Module, group: str, style_layers: Any) -> bool:
    try:
        return len(style_layers(G, group)) > 0
    except ValueError:
        return False


def image_labels(G: torch.nn.Module, num: int, labels: Sequence[str | int] | torch.Tensor | None
                 ) -> torch.Tensor | None:
    """The class index int64 [num] of each image for G (None for an unconditional G): `labels` (one per image,
    or a single one for all), else the classes in turn. Raises GenerateError listing the valid labels."""
    from pggan.labels import LabelError, generator_classes, label_indices

    names = generator_classes(G)
    try:
        if labels is None:
            return torch.arange(num) % len(names) if names else None
        if isinstance(labels, torch.Tensor):
            labels = labels.tolist()
        found = label_indices(list(labels), names)              # [L]
    except LabelError as e:
        raise GenerateError(str(e)) from None
    if len(found) == 1:
        return found.repeat(num)
    if len(found) != num:
        raise GenerateError(f"{len(found)} labels for {num} images: give one label, or one per image")
    return found


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between latent batches a, b [N, latent] (Gaussian latents stay on their shell)."""
    a_n, b_n = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(dim=1, keepdim=True).clamp(-1.0, 1.0))   # [N, 1]
    so = torch.sin(omega)
    safe = so.abs() > 1e-6
    return torch.where(safe, (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / so.where(safe, 1.0),
                       torch.lerp(a, b, t))                     # nearly parallel: plain lerp


def interpolate(G: torch.nn.Module, num: int, seed: int, steps: int, keyframes: int = 4,
                batch: int = 64, psi: float = 1.0, noise_mode: str | None = None,
                labels: Sequence[str | int] | None = None) -> np.ndarray:
    """A looping latent walk: `keyframes` random points per walk, `steps` frames between consecutive ones, `num`
    walks side by side (of a conditional G: each of one class, as generate_images). Returns uint8 frames
    [keyframes * steps, num, R, R, 3]."""
    check_request(num, seed)
    check_style_request(G, psi, noise_mode)
    noise_mode = noise_for(G, noise_mode)
    walk_labels = image_labels(G, num, labels)                  # [num] or None
    if steps < 1 or keyframes < 2:
        raise GenerateError(f"--interpolate {steps} with {keyframes} keyframes: need at least 1 step and 2 keyframes")
    keys = sample_latents(keyframes * num, latent_dim_of(G), seed).reshape(keyframes, num, -1)  # [K, num, latent]
    frames = []
    for f in range(keyframes * steps):
        k, t = divmod(f, steps)
        z = slerp(keys[k], keys[(k + 1) % keyframes], t / steps)  # [num, latent]
        with seeded_noise(G, seed):                              # StyleGAN: the same noise in every frame
            frames.append(to_uint8(generate(G, z, batch=batch, psi=psi, noise_mode=noise_mode,
                                            labels=walk_labels)))   # [num, R, R, 3]
    return np.stack(frames)                                      # [F, num, R, R, 3]


# ----------------------------------------------------------------------------------------------------------------
# Encoding.

def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def gif_bytes(frames: np.ndarray, fps: float = 12.0) -> bytes:
    """uint8 [F, H, W, 3] -> an endlessly looping animated GIF."""
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return buf.getvalue()


def output_format(out: str, fmt: str | None, interpolate_steps: int) -> str:
    """png | npy | gif, from --format or the --out suffix."""
    fmt = fmt or {".npy": "npy", ".gif": "gif"}.get(os.path.splitext(out)[1].lower(), "png")
    if interpolate_steps and fmt == "png":
        fmt = "gif"
    if fmt == "gif" and not interpolate_steps:
        raise GenerateError(f"--out {out!r}: a GIF is a latent walk; add --interpolate STEPS (e.g. 8)")
    return fmt


def parse_grid(spec: str) -> tuple[int, int]:
    """--style-mix ROWSxCOLS -> (rows, cols)."""
    r, _, c = spec.lower().partition("x")
    if not (r.isdigit() and c.isdigit() and int(r) >= 1 and int(c) >= 1):
        raise GenerateError(f"--style-mix {spec!r}: expected ROWSxCOLS, e.g. 3x5 (row sources x column sources)")
    return int(r), int(c)


def requested_labels(G: torch.nn.Module, label_args: Sequence[str] | None, per_class: int | None,
                     num: int) -> tuple[list[str] | None, int]:
    """(label of each image or None, number of images) from --label (repeatable: the images take the given
    labels in turn) and --per-class N (N images of each class, or of each --label, class after class). Labels or
    --per-class on an unconditional G are refused in one line."""
    from pggan.labels import generator_classes

    names = generator_classes(G)
    if per_class is not None:
        if per_class < 1:
            raise GenerateError(f"--per-class {per_class}: must be at least 1")
        if not names:
            raise GenerateError("--per-class: the model is unconditional (trained without labels); use --num")
        classes = list(label_args or names)
        return [c for c in classes for _ in range(per_class)], len(classes) * per_class
    if not label_args:
        return None, num
    return [label_args[i % len(label_args)] for i in range(num)], num


def render(G: torch.nn.Module, args: argparse.Namespace) -> bytes:
    """The bytes of --out: a PNG grid, raw uint8 images (.npy), or a GIF / .npy of a latent walk. A conditional
    G's images take --label / --per-class (default: the classes in turn)."""
    fmt = output_format(args.out, args.format, args.interpolate)
    psi, noise = getattr(args, "truncation", 1.0), getattr(args, "noise", None)
    if getattr(args, "style_mix", None):
        rows, cols = parse_grid(args.style_mix)
        images = style_mix_images(G, rows, cols, args.seed, args.mix_groups, psi, noise)   # [n, R, R, 3]
        return npy_bytes(images) if fmt == "npy" else encode_png(image_grid(images, cols=1 + cols))
    labels, num = requested_labels(G, getattr(args, "label", None), getattr(args, "per_class", None), args.num)
    cols = args.cols or (getattr(args, "per_class", None) or None)  # --per-class: one row per class
    if args.interpolate:
        frames = interpolate(G, num, args.seed, args.interpolate, args.keyframes, args.batch,
                             psi, noise, labels=labels)                            # [F, n, R, R, 3]
        if fmt == "npy":
            return npy_bytes(frames)
        return gif_bytes(np.stack([image_grid(f, cols=cols) for f in frames]), args.fps)
    images = generate_images(G, num, args.seed, args.batch, psi, noise, labels=labels)   # [n, R, R, 3]
    return npy_bytes(images) if fmt == "npy" else encode_png(image_grid(images, cols=cols))


# ----------------------------------------------------------------------------------------------------------------
# `pggan generate` (arguments in pipelines/cli.py, add_generate_args).

def tracking_uri_for(source: str, explicit: str | None, cfg: PipelineConfig) -> str | None:
    """For an MLflow `source`: `explicit` (--tracking-uri), else the config's tracking.uri / MLFLOW_TRACKING_URI /
    the SQLite file under storage.root. None for a checkpoint source."""
    if not is_mlflow_uri(source):
        return None
    if explicit:
        return explicit
    from pggan.tracking.client import TrackingError, resolve_tracking_uri

    try:
        return resolve_tracking_uri(cfg)
    except TrackingError as e:
        raise GenerateError(f"{source!r} needs a tracking URI: {e}") from None


def run(args: argparse.Namespace, cfg: PipelineConfig) -> int:
    """Generate images from a registered model or a checkpoint: a PNG grid, raw .npy, or a GIF latent walk."""
    try:
        G = load_generator(args.model, cfg.storage, tracking_uri_for(args.model, args.tracking_uri, cfg))
        data = render(G, args)
    except GenerateError as e:
        print(f"pggan generate: error: {e}", file=sys.stderr)
        return 2
    st.write_bytes_atomic(st.to_url(args.out), data, cfg.storage)
    print(f"wrote {args.out} ({len(data)} bytes)")
    return 0
