"""A conditional run's pieces outside Ray: the run's classes read once and kept on resume, labelled batches kept in
pairs, the conditional step, class names in checkpoints, generating a chosen class, serving a label per request,
and the per-class stage-end metrics."""
from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from mlflow.exceptions import MlflowException

from pggan import checkpoint as ckpt_io
from pggan.batches import cycle_batches
from pggan.class_eval import class_rows, class_summary, evaluate_classes, metric_name, swd_matrix
from pggan.config import load_config
from pggan.dataset import level_name, read_labels, synthetic_source_name
from pggan.evaluation import evaluate_checkpoint, sample_grid, summary_line
from pggan.generate import GenerateError, generate_images, image_labels, render, requested_labels
from pggan.labels import LabelError, attach_class_names, check_same_classes, generator_classes, run_classes
from pggan.losses import AUX_STAT_NAMES
from pggan.stage_nets import build_stage
from pggan.synthetic import CLASS_COLOURS, synthetic_image
from pggan.tracking.serving import GeneratorService, model_metadata
from pggan.train_step import train_step

NAMES = ("circle", "square", "triangle")
MANIFEST = {"labels": {name: i for i, name in enumerate(NAMES)}}


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny.yaml", ["data.labels=folders"])


def conditional_g(cfg, res: int = 8):
    nets = build_stage(cfg.model, cfg.optim, res, 1e-3, "cpu", init_seed=0, num_classes=len(NAMES))
    return attach_class_names(nets.G_ema, NAMES), nets


# ----------------------------------------------------------------------------------------------------------------
# The run's classes.

def test_a_run_is_conditional_on_the_manifests_classes_in_index_order_with_their_counts():
    column = np.array([2, 0, 1, 0, 2, 2])
    assert run_classes(MANIFEST, "folders", column) == {"names": list(NAMES), "counts": [2, 1, 3]}
    assert run_classes(MANIFEST, "none", None) is None


@pytest.mark.parametrize("manifest, column, words", [
    ({"labels": {"circle": 0}}, np.array([0, 0]), "one class"),
    ({"labels": None}, np.array([-1, -1]), "without labels"),
    (MANIFEST, np.array([0, 1, 1]), "class 2 has no image"),
])
def test_a_data_set_that_cannot_train_a_conditional_run_is_refused_in_one_line(manifest, column, words):
    with pytest.raises(LabelError, match=words) as e:
        run_classes(manifest, "folders", column, "datasets/x")
    assert "\n" not in str(e.value)


def test_a_resume_refuses_other_classes_or_another_order_in_one_line():
    saved = {"names": list(NAMES), "counts": [1, 1, 1]}
    check_same_classes(saved, {"names": list(NAMES), "counts": [5, 5, 5]})      # more images: the same classes
    check_same_classes(None, None)                                               # unconditional both times
    for found in ({"names": ["square", "circle", "triangle"]}, {"names": ["circle", "square"]}, None):
        with pytest.raises(LabelError, match="trained on classes") as e:
            check_same_classes(saved, found, "datasets/x")
        assert "\n" not in str(e.value)


def test_the_label_column_is_read_alone_in_row_order(tmp_path):
    url = str(tmp_path / "ds")
    os.makedirs(os.path.join(url, level_name(4)))
    pq.write_table(pa.table({"label": pa.array([2, 0, 1], pa.int64()), "key": ["a", "b", "c"]}),
                   os.path.join(url, level_name(4), "part-0.parquet"))
    assert read_labels(url, 4).tolist() == [2, 0, 1]


def test_a_labelled_demo_source_never_shares_a_name_with_an_unlabelled_one():
    assert synthetic_source_name(128, 16, 0) == "synthetic-128-16-s0"
    assert synthetic_source_name(128, 16, 0, labels=True) != synthetic_source_name(128, 16, 0)
    labelled = load_config("tiny.yaml", ["data.labels=folders", "storage.root=/r"])
    from pggan.dataset import dataset_url

    assert dataset_url(labelled) != dataset_url(load_config("tiny.yaml", ["storage.root=/r"]))


# ----------------------------------------------------------------------------------------------------------------
# Training.

def test_cached_labelled_batches_keep_each_image_with_its_label():
    images = torch.arange(12).reshape(12, 1, 1, 1).expand(12, 2, 2, 3).to(torch.uint8)
    labels = torch.arange(12) * 10                                               # label = 10 * image value
    epoch = [(images[i:i + 4], labels[i:i + 4]) for i in range(0, 12, 4)]
    stream = cycle_batches(iter(epoch), lambda: iter(epoch), 4, cache_bytes=1 << 20)
    for _ in range(9):                                                           # streamed, then reshuffled
        batch_images, batch_labels = next(stream)
        assert torch.equal(batch_images[:, 0, 0, 0].long() * 10, batch_labels)


def test_the_conditional_step_needs_labels_and_reports_the_ac_gan_stats(cfg):
    torch.manual_seed(0)
    nets = build_stage(cfg.model, cfg.optim, 8, 1e-3, "cpu", init_seed=1, num_classes=3)
    reals = torch.rand(8, 3, 8, 8) * 2 - 1
    with pytest.raises(ValueError, match="real_labels"):
        train_step(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, reals, 1.0, cfg)
    stats = train_step(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, reals, 1.0, cfg,
                       real_labels=torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), label_probs=torch.ones(3) / 3)
    assert set(AUX_STAT_NAMES) <= set(stats) and "g_loss" in stats
    assert all(np.isfinite(v) for v in stats.values())
    assert 0.0 <= stats["d_acc_real"] <= 1.0


def test_a_checkpoint_carries_the_class_names_and_rebuilds_g_and_d_with_them(cfg, tmp_path):
    G, nets = conditional_g(cfg)
    state = ckpt_io.training_state(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, resolution=8, stage_nimg=16,
                                   alpha=1.0, rng=[ckpt_io.capture_rng()], config=cfg, class_names=NAMES)
    ckpt_io.save_checkpoint(str(tmp_path), state)
    loaded = ckpt_io.load_checkpoint(str(tmp_path))
    assert loaded["class_names"] == list(NAMES)
    assert generator_classes(ckpt_io.build_generator(loaded)) == NAMES
    D = ckpt_io.build_discriminator(loaded)
    assert D(torch.zeros(2, 3, 8, 8), 1.0).shape == (2, 1 + len(NAMES))       # score + one logit per class
    assert model_metadata(ckpt_io.build_generator(loaded))["pggan.class_names"] == list(NAMES)


def test_summary_of_a_trained_model_shows_its_conditional_tables_and_class_names(cfg, tmp_path, capsys):
    from pipelines.cli import main

    G, nets = conditional_g(cfg)
    state = ckpt_io.training_state(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, resolution=8, stage_nimg=16,
                                   alpha=1.0, rng=[ckpt_io.capture_rng()], config=cfg, class_names=NAMES)
    ckpt_io.save_checkpoint(str(tmp_path / "ckpt"), state)
    assert main(["summary", "--model", str(tmp_path / "ckpt"), "--set", f"storage.root={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "Label embedding" in out and "8x8" in out
    assert "Classes (3): 0=circle, 1=square, 2=triangle" in out
    assert main(["summary", "--model", str(tmp_path / "missing"), "--set", f"storage.root={tmp_path}"]) == 2
    assert "--model" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
# Generating and serving a chosen class.

def test_labels_by_name_or_index_choose_the_class_and_default_to_the_classes_in_turn(cfg):
    G, _ = conditional_g(cfg)
    assert image_labels(G, 4, ["square"]).tolist() == [1, 1, 1, 1]
    assert image_labels(G, 2, ["2", 0]).tolist() == [2, 0]
    assert image_labels(G, 4, None).tolist() == [0, 1, 2, 0]
    assert np.array_equal(generate_images(G, 3, 5, labels=["triangle"]), generate_images(G, 3, 5, labels=[2]))
    assert not np.array_equal(generate_images(G, 3, 5, labels=["circle"]), generate_images(G, 3, 5, labels=[2]))


def test_a_bad_label_or_a_label_for_an_unconditional_model_is_one_line(cfg):
    G, _ = conditional_g(cfg)
    with pytest.raises(GenerateError, match="valid labels") as e:
        image_labels(G, 2, ["dog"])
    assert "0=circle, 1=square, 2=triangle" in str(e.value) and "\n" not in str(e.value)
    plain = build_stage(cfg.model, cfg.optim, 8, 1e-3, "cpu", init_seed=0).G_ema
    with pytest.raises(GenerateError, match="unconditional"):
        image_labels(plain, 2, ["circle"])
    with pytest.raises(GenerateError, match="unconditional"):
        requested_labels(plain, None, 2, 4)


def test_per_class_makes_one_grid_row_per_class(cfg):
    G, _ = conditional_g(cfg)
    labels, num = requested_labels(G, None, 2, 64)
    assert (labels, num) == (["circle", "circle", "square", "square", "triangle", "triangle"], 6)
    args = argparse.Namespace(out="x.npy", format=None, interpolate=0, num=64, seed=0, batch=64, cols=None,
                              label=None, per_class=2)
    images = np.load(__import__("io").BytesIO(render(G, args)))
    assert images.shape == (6, 8, 8, 3)
    assert np.array_equal(images, generate_images(G, 6, 0, labels=[0, 0, 1, 1, 2, 2]))


def test_the_served_model_takes_a_label_per_request_and_names_each_images_class(cfg):
    G, _ = conditional_g(cfg)
    service = GeneratorService(G)
    answer = service.predict(pd.DataFrame({"num": [2, 3], "seed": [0, 0], "label": ["square", None]}))
    assert answer["label"].tolist() == ["square", "square", "circle", "square", "triangle"]
    with pytest.raises(MlflowException, match="valid labels"):
        service.predict(pd.DataFrame({"num": [1], "label": ["dog"]}))
    plain = GeneratorService(build_stage(cfg.model, cfg.optim, 8, 1e-3, "cpu", init_seed=0).G_ema)
    with pytest.raises(MlflowException, match="unconditional"):
        plain.predict(pd.DataFrame({"num": [1], "label": ["0"]}))
    assert "label" not in plain.predict(pd.DataFrame({"num": [1]})).columns


def test_a_saved_conditional_model_serves_a_label_by_name_or_index_through_pyfunc(cfg, tmp_path):
    import mlflow.pyfunc

    from pggan.tracking import serving

    G, _ = conditional_g(cfg)
    serving.save_model(str(tmp_path / "g"), generator=G)
    model = mlflow.pyfunc.load_model(str(tmp_path / "g"))             # enforces the serving signature
    by_name = model.predict(pd.DataFrame({"num": [2], "seed": [3], "label": ["triangle"]}))
    by_index = model.predict(pd.DataFrame({"num": [2], "seed": [3], "label": ["2"]}))
    assert by_name["label"].tolist() == ["triangle", "triangle"]
    assert by_name["png"].tolist() == by_index["png"].tolist()


# ----------------------------------------------------------------------------------------------------------------
# The per-class stage-end metrics.

def write_level(url: str, images: np.ndarray, labels: np.ndarray) -> None:
    """A data set level as ingest lays it out (image as list<uint8> storage, label, key)."""
    res = images.shape[1]
    os.makedirs(os.path.join(url, level_name(res)), exist_ok=True)
    flat = pa.array([img.reshape(-1) for img in images], pa.large_list(pa.uint8()))
    table = pa.table({"image": flat, "label": pa.array(labels, pa.int64()),
                      "key": [f"{i}.png" for i in range(len(images))]})
    pq.write_table(table, os.path.join(url, level_name(res), "part-0.parquet"))


def coloured(n: int, colour, res: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.array(colour)[None, None, None] + rng.integers(-20, 20, (n, res, res, 3)), 0, 255
                   ).astype(np.uint8)


def test_class_rows_are_a_seeded_sample_of_that_class_only():
    labels = np.array([0, 1, 0, 2, 0, 1])
    rows = class_rows(labels, 0, 2, seed=3)
    assert len(rows) == 2 and set(labels[rows]) == {0} and list(rows) == sorted(rows)
    assert class_rows(labels, 0, 2, seed=3).tolist() == rows.tolist()
    assert len(class_rows(labels, 2, 10, seed=0)) == 1                           # capped at the class's size


def shapes(kind: str, n: int, seed: int, size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([synthetic_image(rng, size, kind) for _ in range(n)])      # uint8 [n, size, size, 3]


def test_the_swd_matrix_puts_each_labelled_demo_class_nearest_its_own_reals():
    reals = {name: shapes(name, 32, seed=0) for name in CLASS_COLOURS}
    fakes = {name: shapes(name, 32, seed=1) for name in CLASS_COLOURS}
    matrix = swd_matrix(fakes, reals, seed=0)
    for name, row in matrix.items():
        assert min(row, key=row.get) == name


def test_the_stage_end_of_a_conditional_checkpoint_adds_per_class_metrics_and_a_row_per_class(cfg, tmp_path):
    G, nets = conditional_g(cfg)
    url = str(tmp_path / "ds")
    images = np.concatenate([coloured(12, c, seed=i) for i, c in enumerate(CLASS_COLOURS.values())])
    write_level(url, images, np.repeat([0, 1, 2], 12))
    state = ckpt_io.training_state(nets.G, nets.D, nets.G_ema, nets.opt_G, nets.opt_D, resolution=8, stage_nimg=16,
                                   alpha=1.0, rng=[ckpt_io.capture_rng()], config=cfg, class_names=NAMES)
    ckpt_io.save_checkpoint(str(tmp_path / "ckpt"), state)
    result = evaluate_checkpoint(str(tmp_path / "ckpt"), url, 8, num_images=8, seed=0)
    for name in NAMES:
        assert result[metric_name("swd_class", name)] == result["swd_class_matrix"][name][name] > 0
        assert 0.0 <= result[metric_name("aux_acc", name)] <= 1.0
    assert "per class SWD" in summary_line(result) and class_summary({}) == ""
    grid = sample_grid(str(tmp_path / "ckpt"), grid_size=4, seed=0)
    assert round(grid.shape[0] / (grid.shape[1] / 4)) == 3                     # 3 rows (classes) of 4 tiles
    assert evaluate_classes(build_stage(cfg.model, cfg.optim, 8, 1e-3, "cpu", 0).G_ema, None, url, 8, 8, 0) == {}


def test_metric_names_keep_only_characters_mlflow_accepts():
    assert metric_name("swd_class", "big cats/2") == "swd_class_big_cats/2".replace("/", "_")


def test_in_memory_minibatches_and_the_ray_free_loop_train_a_conditional_run(cfg):
    from pggan.batches import minibatches
    from pggan.progressive import train_progressive

    images = np.repeat(np.arange(12, dtype=np.uint8), 4 * 4 * 3).reshape(12, 4, 4, 3)
    labels = np.arange(12) % 3
    batch_images, batch_labels = next(minibatches(images, 4, 0, labels))
    assert torch.equal(batch_images[:, 0, 0, 0].long() % 3, batch_labels)     # pairs kept through the shuffle
    small = load_config("tiny.yaml", ["data.resolution=4", "schedule.stabilize_kimg=0.032", "data.labels=folders"])
    rng = np.random.default_rng(0)
    nets = train_progressive(small, {4: rng.integers(0, 255, (32, 4, 4, 3), dtype=np.uint8)},
                             labels={4: np.arange(32) % 3})
    assert nets.G_ema.num_classes == 3 and nets.D.num_classes == 3


def test_mlflow_gets_the_per_class_metrics_flat_and_not_the_matrix():
    from pggan.tracking.runs import stage_metrics

    result = {"swd_avg": 3.0, "swd_class_circle": 1.0, "aux_acc_circle": 0.5,
              "swd_class_matrix": {"circle": {"circle": 1.0}}}
    flat = stage_metrics(4, result)
    assert flat["swd_class_circle"] == 1.0 and flat["aux_acc_circle"] == 0.5
    assert not any(key.startswith("swd_class_matrix") for key in flat)
