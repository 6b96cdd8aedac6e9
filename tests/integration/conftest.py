"""Integration fixtures for training: one storage root per session with the tiny data set ingested once."""
from __future__ import annotations

from typing import Iterator

import pytest

from train_helpers import tiny_config  # tests/integration is on sys.path


@pytest.fixture(scope="session")
def tiny_root(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A storage root (absolute path) holding the tiny data set (4x4, 8x8 levels), shared by the training tests;
    each test uses its own run id under it."""
    from pipelines.ingest import ingest

    root = str(tmp_path_factory.mktemp("pggan-root"))
    ingest(tiny_config(root))
    yield root
