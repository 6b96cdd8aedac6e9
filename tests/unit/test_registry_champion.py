"""The champion rule: a version takes `champion` only from a champion evaluated alike (data set, resolution,
evaluation images and seed) with a lower SWD; otherwise the alias stays and the reason says why, in one line."""
from __future__ import annotations

import pytest

from pggan.config import load_config
from pggan.tracking.registry import (TAG_DATASET, TAG_EVAL_IMAGES, TAG_EVAL_SEED, TAG_RESOLUTION, TAG_SWD,
                                     champion_decision, protocol_tags)

FACES_256 = {TAG_SWD: "20.0", TAG_DATASET: "faces-256", TAG_RESOLUTION: "256", TAG_EVAL_IMAGES: "1000",
             TAG_EVAL_SEED: "0"}


def demo_tags(swd: float) -> dict[str, str]:
    """A 32x32 demo run's version tags, as log_and_register_generator makes them."""
    cfg = load_config("demo.yaml")
    metrics = {"swd_avg": swd, "resolution": 32, "num_reals": 256, "num_fakes": 256, "seed": 0}
    return {TAG_SWD: repr(swd), **protocol_tags(cfg, 32, metrics)}


def test_protocol_tags_name_the_data_set_resolution_and_evaluation():
    tags = demo_tags(3.0)
    assert tags[TAG_DATASET] == "synthetic-2000-64-s0-32"          # the data set's name, not "synthetic"
    assert (tags[TAG_RESOLUTION], tags[TAG_EVAL_IMAGES], tags[TAG_EVAL_SEED]) == ("32", "256", "0")


def test_a_better_demo_score_never_displaces_a_champion_of_other_data_and_says_why():
    moved, reason = champion_decision("pggan", "7", demo_tags(1.0), ("3", FACES_256))
    assert not moved
    assert "stays at version 3" in reason and "faces-256 at 256x256" in reason
    assert "synthetic-2000-64-s0-32 at 32x32" in reason and "different dataset, resolution, eval_num_images" in reason
    assert "\n" not in reason


@pytest.mark.parametrize("key, value", [(TAG_EVAL_IMAGES, "1024"), (TAG_EVAL_SEED, "1")])
def test_the_same_data_evaluated_otherwise_is_not_compared(key, value):
    champion = {**demo_tags(5.0), key: value}
    moved, reason = champion_decision("pggan", "2", demo_tags(1.0), ("1", champion))
    assert not moved and key.removeprefix("pggan.") in reason


def test_like_with_like_moves_only_on_a_lower_swd():
    moved, reason = champion_decision("pggan", "2", demo_tags(3.0), ("1", demo_tags(5.0)))
    assert moved and "-> version 2" in reason and "beats version 1's 5" in reason
    moved, reason = champion_decision("pggan", "3", demo_tags(6.0), ("1", demo_tags(5.0)))
    assert not moved and "stays at version 1" in reason and "not beaten" in reason


def test_the_first_scored_version_becomes_champion_and_an_unscored_one_never_does():
    assert champion_decision("pggan", "1", demo_tags(4.0), None)[0]
    moved, reason = champion_decision("pggan", "1", {**demo_tags(4.0), TAG_SWD: "nan"}, None)
    assert not moved and "no finite SWD" in reason
    old = {TAG_SWD: "2.0", TAG_RESOLUTION: "32"}                      # registered before the protocol tags
    moved, reason = champion_decision("pggan", "2", demo_tags(1.0), ("1", old))
    assert not moved and "stays at version 1" in reason
