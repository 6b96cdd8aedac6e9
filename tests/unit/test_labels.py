"""Labels of a conditional run: class names from the manifest, a user's label to an index (one-line errors that
list the valid labels), the data set's label distribution and labels drawn from it; optim.aux_weight."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pggan import labels as lb
from pggan.config import ConfigError, config_from_dict

NAMES = ("circle", "square", "triangle")
MANIFEST = {"labels": {"square": 1, "triangle": 2, "circle": 0}, "count": 30}   # as ingest writes it


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_class_names_come_in_index_order_from_the_manifest() -> None:
    assert lb.class_names(MANIFEST) == NAMES
    assert lb.class_names({"labels": None}) == ()                           # ingested with labels=none
    with pytest.raises(lb.LabelError, match="0..1; ingest the data set again"):
        lb.class_names({"labels": {"a": 0, "b": 2}})


def test_conditional_classes_follow_data_labels_and_refuse_unusable_sets() -> None:
    assert lb.conditional_classes(MANIFEST, "none") == ()
    assert lb.conditional_classes(MANIFEST, "folders") == NAMES
    with pytest.raises(lb.LabelError) as err:
        lb.conditional_classes({"labels": None}, "folders", "datasets/shapes-32")
    assert "datasets/shapes-32 was ingested without labels" in one_line(err)
    with pytest.raises(lb.LabelError) as err:
        lb.conditional_classes({"labels": {"cats": 0}}, "folders")
    assert "has one class ('cats')" in one_line(err) and "data.labels=none" in one_line(err)


@pytest.mark.parametrize("label, index", [("square", 1), (2, 2), ("0", 0), (np.int64(1), 1), (" 2 ", 2)])
def test_a_label_is_a_class_name_or_an_index(label, index: int) -> None:
    assert lb.label_index(label, NAMES) == index


@pytest.mark.parametrize("label", ["dog", 3, -1, "-1", "1.0", True, 1.0])
def test_a_label_outside_the_set_is_one_line_listing_the_valid_ones(label) -> None:
    with pytest.raises(lb.LabelError) as err:
        lb.label_index(label, NAMES)
    assert one_line(err).endswith("valid labels (index=name): 0=circle, 1=square, 2=triangle")
    assert repr(label) in one_line(err) or str(label) in one_line(err)


def test_a_class_named_like_a_number_is_found_by_name_first() -> None:
    assert lb.label_index("0", ("1", "0")) == 1
    assert lb.label_index(0, ("1", "0")) == 0


def test_a_label_for_an_unconditional_model_is_refused() -> None:
    with pytest.raises(lb.LabelError) as err:
        lb.label_index("square", ())
    assert "the model is unconditional" in one_line(err)


def test_label_errors_are_config_errors_so_the_command_line_prints_one_line() -> None:
    assert issubclass(lb.LabelError, ConfigError)


def test_label_indices_and_checks() -> None:
    assert torch.equal(lb.label_indices(["triangle", 0, "1"], NAMES), torch.tensor([2, 0, 1]))
    assert lb.check_indices(np.array([0, 2], np.int32), 3).dtype == torch.int64
    with pytest.raises(lb.LabelError, match=r"label 3 is outside the model's classes 0\.\.2"):
        lb.check_indices(torch.tensor([0, 3]), 3)
    with pytest.raises(lb.LabelError, match=r"expected integer class indices \[N\]"):
        lb.check_indices(torch.tensor([0.0, 1.0]), 3)
    with pytest.raises(lb.LabelError, match="expected integer class indices"):
        lb.check_indices(torch.zeros(2, 3, dtype=torch.int64), 3)


def test_one_hot_round_trip_and_bad_one_hot_rows() -> None:
    y = torch.tensor([2, 0, 1, 1])
    oh = lb.one_hot(y, 3)
    assert oh.tolist() == [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert torch.equal(lb.from_one_hot(oh), y)
    for bad in ([[1, 1, 0]], [[0, 0, 0]], [[0.5, 0.5, 0]], [1, 0, 0]):
        with pytest.raises(lb.LabelError, match="exactly one 1 per row"):
            lb.from_one_hot(torch.tensor(bad))


def test_class_counts_from_a_label_column() -> None:
    column = np.array([0, 2, 2, 1, 2, 0], np.int64)
    assert lb.class_counts(column, 3).tolist() == [2, 1, 3]
    with pytest.raises(lb.LabelError, match="ingested without labels"):
        lb.class_counts(np.array([-1, -1]), 3)                              # unlabelled rows
    with pytest.raises(lb.LabelError, match="class 1 has no image"):
        lb.class_counts(np.array([0, 2, 2]), 3)


def test_fake_labels_follow_the_data_sets_label_distribution() -> None:
    probs = lb.label_distribution([100, 300, 600])
    assert torch.allclose(probs, torch.tensor([0.1, 0.3, 0.6]))
    n = 20_000
    drawn = lb.sample_labels(probs, n, seed=5)
    assert drawn.dtype == torch.int64 and drawn.shape == (n,)
    freq = torch.bincount(drawn, minlength=3).float() / n
    # 4 binomial standard deviations at the largest p(1-p) = 0.24: sqrt(0.24 / n) ~ 0.0035.
    assert torch.allclose(freq, probs, atol=4 * math.sqrt(0.24 / n))
    assert torch.equal(lb.sample_labels(probs, 50, seed=5), drawn[:50])    # seeded: reproducible
    assert not torch.equal(lb.sample_labels(probs, 50, seed=6), drawn[:50])


def test_global_rng_sampling_and_edge_cases() -> None:
    probs = lb.label_distribution([0, 5, 5])
    torch.manual_seed(3)
    a = lb.sample_labels(probs, 1000)
    torch.manual_seed(3)
    assert torch.equal(lb.sample_labels(probs, 1000), a)                   # follows torch's seed, like latents
    assert 0 not in a.tolist()                                               # a class without images is never drawn
    assert lb.sample_labels(probs, 0).shape == (0,)
    with pytest.raises(lb.LabelError, match="not all zero"):
        lb.label_distribution([0, 0])


def test_per_class_labels_give_one_block_per_class() -> None:
    assert lb.per_class_labels(3, 2).tolist() == [0, 0, 1, 1, 2, 2]


def test_a_generator_carries_its_class_names() -> None:
    from pggan.config import ModelConfig
    from pggan.nn.networks import Generator

    small = ModelConfig(latent_dim=8, fmap_base=32, fmap_max=8)
    G = Generator(small, 4, num_classes=3)
    assert lb.generator_classes(G) == ("0", "1", "2")                      # no names attached: indices
    assert lb.generator_classes(lb.attach_class_names(G, NAMES)) == NAMES
    assert lb.label_index("triangle", lb.generator_classes(G)) == 2
    assert lb.generator_classes(Generator(small, 4)) == ()
    with pytest.raises(lb.LabelError, match="2 class names"):
        lb.attach_class_names(G, NAMES[:2])


def test_aux_weight_is_the_official_cond_weight_by_default_and_validated() -> None:
    assert config_from_dict({}).optim.aux_weight == 1.0
    assert config_from_dict({"optim": {"aux_weight": 0.25}}).optim.aux_weight == 0.25
    for bad in (0.0, -1.0, float("nan"), "much"):
        with pytest.raises(ConfigError, match="optim.aux_weight"):
            config_from_dict({"optim": {"aux_weight": bad}})
