"""The data set name derived from the source when data.name is not given: readable, distinct for distinct
folders, unchanged for the simple cases that existing data sets were ingested under."""
from __future__ import annotations

import pytest

from pggan.config import ConfigError, load_config
from pggan.dataset import dataset_url, default_name


@pytest.mark.parametrize("source, res, name", [
    ("s3://b/faces/", 64, "faces-64"),                                  # existing names stay what they were
    ("/data/photos", 128, "photos-128"),
    ("s3://bucket", 32, "bucket-32"),
    ("/srv/img/google/64", 32, "google-64-32"),                         # not '64-32'
    ("/srv/celeba/1024x1024", 256, "celeba-1024x1024-256"),
    ("/srv/cats/2023/128px/", 64, "cats-2023-128px-64"),
    ("/srv/My Photos (old)/", 64, "My-Photos-old-64"),
])
def test_the_name_is_the_last_named_folder_with_the_numbered_ones_below_it(source, res, name):
    assert default_name(source, res) == name


def test_folders_that_differ_only_in_a_number_get_different_names():
    assert default_name("/srv/img/google/64", 32) != default_name("/srv/img/google/128", 32)


def test_the_demo_data_set_keeps_its_name(tmp_path):
    cfg = load_config(None, [f"storage.root={tmp_path}"])
    assert dataset_url(cfg).endswith("/datasets/synthetic-2000-64-s0-32")


def test_a_source_of_only_numbers_asks_for_data_name(tmp_path):
    with pytest.raises(ConfigError, match=r"^data\.name: .*'/64'.*set data\.name"):
        default_name("/64", 32)
    cfg = load_config(None, [f"storage.root={tmp_path}", "data.source=/64", "data.name=digits"])
    assert dataset_url(cfg).endswith("/datasets/digits")
