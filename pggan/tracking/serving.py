"""The generator as one MLflow model: the pytorch flavour (mlflow.pytorch.load_model) plus a pyfunc that serves PNGs.

One artifact, two flavours. `mlflow.pytorch.load_model(uri)` returns the pggan Generator (pickle serialization:
the pggan package must be importable where it is loaded). `mlflow.pyfunc.load_model(uri)` and
`mlflow models serve -m models:/pggan@champion --env-manager local` use this module's `_load_pyfunc`: a request
row {"num": N, "seed": S, "psi": P} (seed optional, default 0; psi, StyleGAN's truncation, optional, default
1 = none) answers N rows {"request", "seed", "index", "png"} with base64-encoded PNG images, the same images
`pggan generate --seed S` makes. A conditional model also takes an
optional "label" per row (a class name, or its index as a string: "circle" or "0"): all of that row's images are
of that class; without, they take the classes in turn (image i of class i mod K, as `pggan generate`), and the
answer's "label" column names each image's class. A label outside the classes is refused with one line listing
them; a label given to an unconditional model, likewise. The model signature describes this
serving interface (the pytorch flavour takes latents [N, latent_dim] and needs no signature).
"""
from __future__ import annotations

import base64
import os
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import add_to_model
from mlflow.types import ColSpec, Schema

from pggan.generate import GenerateError, check_request, generate_images, image_labels, latent_dim_of
from pggan.imaging import encode_png

MAX_IMAGES_PER_REQUEST = 256
SERIALIZATION = "pickle"       # keeps the Generator class (alpha, .resolution, .model); pt2 would freeze alpha
INPUT_EXAMPLE = pd.DataFrame({"num": [2], "seed": [0]})


def serving_signature() -> ModelSignature:
    inputs = Schema([ColSpec("long", "num"), ColSpec("long", "seed", required=False),
                     ColSpec("double", "psi", required=False), ColSpec("string", "label", required=False)])
    outputs = Schema([ColSpec("long", "request"), ColSpec("long", "seed"), ColSpec("long", "index"),
                      ColSpec("string", "png"), ColSpec("string", "label", required=False)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def pip_requirements() -> list[str]:
    """Explicit (skips MLflow's slow inference). pggan itself is not on PyPI: serve with --env-manager local
    in an environment where this project is installed."""
    import PIL

    return [f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}",
            f"numpy=={np.__version__}", f"pandas=={pd.__version__}", f"pillow=={PIL.__version__}"]


def model_metadata(G: torch.nn.Module) -> dict[str, Any]:
    import dataclasses

    from pggan.labels import generator_classes

    return {"pggan.resolution": int(G.resolution), "pggan.latent_dim": latent_dim_of(G),
            "pggan.arch": getattr(G.model, "arch", "pggan"),
            "pggan.model": dataclasses.asdict(G.model),
            "pggan.class_names": list(generator_classes(G))}     # [] for an unconditional generator


# ----------------------------------------------------------------------------------------------------------------
# Saving (the `flavor` module protocol of mlflow.models.Model.log: save_model(path, mlflow_model, **kwargs)).

def save_model(path: str, mlflow_model: Any = None, generator: torch.nn.Module | None = None,
               serialization_format: str = SERIALIZATION, **kwargs: Any) -> None:
    """Save `generator` at `path`: pytorch flavour (pickle), then our pyfunc flavour and the serving signature."""
    if generator is None:
        raise TypeError("save_model needs generator=<pggan Generator>")
    if mlflow_model is None:
        mlflow_model = mlflow.models.Model()
    G = generator.cpu().eval()
    mlflow.pytorch.save_model(G, path, mlflow_model=mlflow_model, serialization_format=serialization_format,
                              signature=False, input_example=INPUT_EXAMPLE, pip_requirements=pip_requirements(),
                              metadata=model_metadata(G), **kwargs)
    # Replace the pytorch flavour's own pyfunc (latents in, float tensors out) with the PNG service.
    add_to_model(mlflow_model, loader_module=__name__, conda_env="conda.yaml", python_env="python_env.yaml")
    mlflow_model.signature = serving_signature()
    mlflow_model.save(os.path.join(path, "MLmodel"))


# ----------------------------------------------------------------------------------------------------------------
# Loading and predicting (the pyfunc loader protocol: _load_pyfunc(path) -> object with predict).

def _load_pyfunc(path: str, model_config: dict | None = None) -> "GeneratorService":
    """Called by mlflow.pyfunc.load_model with the model's local directory."""
    del model_config
    return GeneratorService(mlflow.pytorch.load_model(path, map_location="cpu"))


class GeneratorService:
    """pyfunc predict: rows {"num", "seed"} -> rows {"request", "seed", "index", "png" (base64 PNG)}."""

    def __init__(self, generator: torch.nn.Module):
        self.generator = generator.eval().requires_grad_(False)

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        del params
        rows = _request_rows(model_input)
        total = sum(num for num, _, _ in rows)
        if total > MAX_IMAGES_PER_REQUEST:
            raise MlflowException.invalid_parameter_value(
                f"{total} images requested; at most {MAX_IMAGES_PER_REQUEST} per request - split the request")
        from pggan.labels import generator_classes

        names = generator_classes(self.generator)
        psis = _request_psis(model_input)
        out = []
        for i, (num, seed, label) in enumerate(rows):
            try:
                classes = image_labels(self.generator, num, None if label is None else [label])   # [num] or None
                images = generate_images(self.generator, num, seed, psi=psis[i], labels=classes)  # [num, R, R, 3]
            except GenerateError as e:
                raise MlflowException.invalid_parameter_value(str(e)) from None
            out += [{"request": i, "seed": seed, "index": j, "png": base64.b64encode(encode_png(img)).decode(),
                     **({"label": names[int(classes[j])]} if names else {})} for j, img in enumerate(images)]
        return pd.DataFrame(out, columns=["request", "seed", "index", "png"] + (["label"] if names else []))


def _request_rows(model_input: Any) -> list[tuple[int, int, str | None]]:
    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    if "num" not in frame.columns:
        raise MlflowException.invalid_parameter_value(
            f"request columns {list(frame.columns)}: expected 'num' (and optionally 'seed'), e.g. "
            '{"dataframe_records": [{"num": 4, "seed": 0}]}')
    seeds = frame["seed"] if "seed" in frame.columns else pd.Series([0] * len(frame))
    labels = frame["label"] if "label" in frame.columns else pd.Series([None] * len(frame))
    rows = []
    for num, seed, label in zip(frame["num"], seeds, labels):
        seed = 0 if seed is None or (isinstance(seed, float) and np.isnan(seed)) else int(seed)
        try:
            check_request(int(num), seed, MAX_IMAGES_PER_REQUEST)
        except GenerateError as e:
            raise MlflowException.invalid_parameter_value(str(e)) from None
        rows.append((int(num), seed, _label_of(label)))
    return rows


def _request_psis(model_input: Any) -> list[float]:
    """Each row's truncation psi (StyleGAN models; column optional, default 1 = none)."""
    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    if "psi" not in frame.columns:
        return [1.0] * len(frame)
    return [1.0 if psi is None or (isinstance(psi, float) and np.isnan(psi)) else float(psi) for psi in frame["psi"]]


def _label_of(value: Any) -> str | None:
    """A request's label cell: None when absent (missing column, null, NaN, ""), else as text ("circle", "0")."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    text = str(value).strip()
    return text or None


def decode_png_column(frame: pd.DataFrame) -> np.ndarray:
    """Inverse of the service for clients: the "png" column -> uint8 [N, R, R, 3]."""
    import io

    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(p))).convert("RGB")) for p in frame["png"]])
