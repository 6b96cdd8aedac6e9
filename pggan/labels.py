"""Class labels of a conditional run: class names from a data set's manifest, a user's label (name or index) to a
class index, and labels for fakes drawn from the data set's label distribution (as the official code does)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from pggan.config import ConfigError

MIN_CLASSES = 2                          # one class is an unconditional model with extra weights


class LabelError(ConfigError):
    """A label or labelled data set that a conditional model cannot use; the message lists what is valid."""


def class_names(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    """The class names of an ingested data set in class-index order (ingest's `labels`: {folder name: index},
    indices 0..K-1); () for a data set ingested without labels."""
    label_map = manifest.get("labels")
    if not label_map:
        return ()
    if not isinstance(label_map, Mapping):
        raise LabelError(f"manifest 'labels' is {type(label_map).__name__}; expected {{class name: index}} "
                         "as ingest writes it - ingest the data set again")
    names = sorted(label_map, key=lambda name: label_map[name])
    indices = [label_map[name] for name in names]
    if indices != list(range(len(names))):
        raise LabelError(f"manifest 'labels' {dict(label_map)} do not number the classes 0..{len(names) - 1}; "
                         "ingest the data set again")
    return tuple(str(name) for name in names)


def conditional_classes(manifest: Mapping[str, Any], labels_setting: str, dataset: str = "the data set"
                        ) -> tuple[str, ...]:
    """The classes a run conditions on: () for data.labels=none; for data.labels=folders the manifest's class
    names, refused (one line each) when the data set has no labels or only one class."""
    if labels_setting == "none":
        return ()
    names = class_names(manifest)
    if not names:
        raise LabelError(f"data.labels=folders but {dataset} was ingested without labels; ingest it again with "
                         "--labels folders (one sub-folder per class)")
    if len(names) < MIN_CLASSES:
        raise LabelError(f"data.labels=folders but {dataset} has one class ({names[0]!r}); a conditional run "
                         f"needs at least {MIN_CLASSES} class sub-folders - add classes or set data.labels=none")
    return names


def attach_class_names(G: torch.nn.Module, names: Sequence[str]) -> torch.nn.Module:
    """Store the class names on a conditional generator (they travel with it: checkpoints rebuild it with them,
    the registry model pickles it); returns G."""
    k = int(getattr(G, "num_classes", 0))
    if len(names) != k:
        raise LabelError(f"{len(names)} class names {list(names)} for a generator conditional on {k} classes")
    G.class_names = tuple(str(name) for name in names)
    return G


def generator_classes(G: torch.nn.Module) -> tuple[str, ...]:
    """A generator's class names: those attached, else "0".."K-1"; () for an unconditional one (also one saved
    before conditional generators existed)."""
    k = int(getattr(G, "num_classes", 0))
    names = tuple(getattr(G, "class_names", ()))
    return names if len(names) == k else tuple(str(i) for i in range(k))


def _valid(names: Sequence[str]) -> str:
    return ", ".join(f"{i}={name}" for i, name in enumerate(names))


def label_index(label: str | int, names: Sequence[str]) -> int:
    """A user's label (a class name, or an index as int or digits) -> its class index; a label outside the set
    is one line listing the valid ones. A class name wins over an index when a folder is named like one."""
    if not names:
        raise LabelError(f"label {label!r} given, but the model is unconditional (trained without labels); "
                         "leave the label out")
    if isinstance(label, str):
        if label in names:
            return list(names).index(label)
        text = label.strip()
        if text.lstrip("-").isdigit():
            label = int(text)
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool) and 0 <= int(label) < len(names):
        return int(label)
    raise LabelError(f"label {label!r} is not a class of this model; valid labels (index=name): {_valid(names)}")


def label_indices(labels: Iterable[str | int], names: Sequence[str]) -> torch.Tensor:
    """Users' labels -> class indices int64 [N] (each as label_index)."""
    return torch.tensor([label_index(label, names) for label in labels], dtype=torch.int64)


def check_indices(labels: torch.Tensor | np.ndarray, num_classes: int) -> torch.Tensor:
    """Class indices [N] checked to lie in 0..num_classes-1 (a device sync: for inputs, not per step) -> int64."""
    t = torch.as_tensor(labels)
    if t.ndim != 1 or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise LabelError(f"labels have shape {tuple(t.shape)} and dtype {t.dtype}; expected integer class "
                         f"indices [N] in 0..{num_classes - 1}")
    bad = t[(t < 0) | (t >= num_classes)]
    if bad.numel():
        raise LabelError(f"label {int(bad[0])} is outside the model's classes 0..{num_classes - 1}")
    return t.to(torch.int64)


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices [N] -> one-hot float [N, K] (the official code's label format)."""
    return torch.nn.functional.one_hot(check_indices(labels, num_classes), num_classes).float()


def from_one_hot(one_hot_labels: torch.Tensor | np.ndarray) -> torch.Tensor:
    """One-hot rows [N, K] (exactly one 1 per row, zeros elsewhere) -> class indices int64 [N]."""
    t = torch.as_tensor(one_hot_labels)
    if t.ndim != 2 or not bool(((t == 0) | (t == 1)).all()) or not bool((t.sum(dim=1) == 1).all()):
        raise LabelError(f"one-hot labels of shape {tuple(t.shape)}: expected [N, K] with exactly one 1 per row")
    return t.argmax(dim=1).to(torch.int64)


# ----------------------------------------------------------------------------------------------------------------
# The data set's label distribution, and labels for fakes drawn from it.

def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Images per class int64 [K] from a level's `label` column; refuses unlabelled rows (-1) and empty classes
    (an empty class would never be drawn, its row of a grid would be noise)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise LabelError(f"label column of shape {labels.shape}: expected the class index of each image [N]")
    if (labels < 0).any() or (labels >= num_classes).any():
        raise LabelError(f"the data set's labels span {int(labels.min())}..{int(labels.max())}, outside classes "
                         f"0..{num_classes - 1}; it was ingested without labels or with other classes - "
                         "ingest it again with --labels folders")
    counts = np.bincount(labels.astype(np.int64), minlength=num_classes)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise LabelError(f"class {int(empty[0])} has no image in the data set; remove its folder or add images")
    return counts


def label_distribution(counts: Sequence[int] | np.ndarray) -> torch.Tensor:
    """Class probabilities float [K] proportional to the images per class."""
    c = torch.as_tensor(np.asarray(counts, dtype=np.float64))
    if c.ndim != 1 or c.numel() < 1 or bool((c < 0).any()) or float(c.sum()) <= 0:
        raise LabelError(f"class counts {list(np.asarray(counts))}: expected non-negative counts, not all zero")
    return (c / c.sum()).float()


def sample_labels(probs: torch.Tensor, n: int, *, seed: int | None = None,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """n class indices int64 [n] drawn (with replacement) from `probs` [K]: from torch's global RNG on `device`
    (a training step, like its latents), or reproducibly from `seed` (evaluation) and then moved to `device`."""
    if n < 0:
        raise ValueError(f"n={n}: the number of labels must be >= 0")
    if n == 0:                                                  # multinomial refuses 0 samples
        return torch.zeros(0, dtype=torch.int64, device=device)
    if seed is None:
        return torch.multinomial(probs.to(device), n, replacement=True)
    gen = torch.Generator().manual_seed(int(seed))
    return torch.multinomial(probs.cpu(), n, replacement=True, generator=gen).to(device)


def per_class_labels(num_classes: int, per_class: int) -> torch.Tensor:
    """[0]*per_class + [1]*per_class + ...: int64 [K * per_class], one grid row (or block) per class."""
    if num_classes < 1 or per_class < 1:
        raise ValueError(f"num_classes={num_classes}, per_class={per_class}: both must be >= 1")
    return torch.arange(num_classes).repeat_interleave(per_class)


# ----------------------------------------------------------------------------------------------------------------
# A run's classes: found once on the driver, kept in run.json, the same for every rank and every resume.

def run_classes(manifest: Mapping[str, Any], labels_setting: str, label_column: np.ndarray | None,
                dataset: str = "the data set") -> dict[str, list] | None:
    """{"names": class names in index order, "counts": images per class} of a conditional run (data.labels=
    folders on a data set with >= 2 classes), None for an unconditional one. `label_column` is one level's
    `label` column (dataset.read_labels); refusals as conditional_classes and class_counts."""
    names = conditional_classes(manifest, labels_setting, dataset)
    if not names:
        return None
    counts = class_counts(np.asarray(label_column), len(names))
    return {"names": list(names), "counts": [int(c) for c in counts]}


def check_same_classes(saved: Mapping[str, Any] | None, found: Mapping[str, Any] | None,
                       dataset: str = "the data set") -> None:
    """A resume must see the classes, in the order, the run was trained on (a class index means the same class
    in every checkpoint); one line when they differ."""
    before = list((saved or {}).get("names", []))
    now = list((found or {}).get("names", []))
    if before != now:
        raise LabelError(f"the run was trained on classes {before or 'none (unconditional)'} but {dataset} now has "
                         f"{now or 'none'}; resume with the data set it was trained on, or start a new run")
