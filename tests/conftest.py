"""Fixtures: a tiny random BERT folder, a tiny config, a small real-format data directory and a
served index (built with tests/helpers.py), the image-feature cache kept out of ~/.cache, and a real
Milvus server (tests/milvus_server.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from milvus_server import REQUIRE_ENV, STARTUP_S, milvus_server, server_command

from helpers import build_tiny_index, make_data_dir, save_tiny_bert, tiny_model_config
from make_retrieval.config import Config
from make_retrieval.model.image_cache import CACHE_ENV


@pytest.fixture(scope="session", autouse=True)
def _feature_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Image-feature caches go to a temporary folder, never the user's ~/.cache (subprocesses inherit)."""
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("feature-cache"))


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    return make_data_dir(tmp_path / "data")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture()
def tiny_config(tiny_bert: Path) -> Config:
    config = Config(model=tiny_model_config(tiny_bert))
    config.train.batch_size = 8
    config.train.epochs = 1  # one pass, as the tests were written for; test_train_length covers the default
    config.train.max_steps = 4
    config.train.warmup_steps = 1
    config.train.head_lr = 1e-2
    config.train.log_every = 1
    return config


@pytest.fixture(scope="session")
def served_index(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``build_tiny_index`` with its query encoder exported to ONNX: what 'serve' is started on."""
    from make_retrieval.pipeline import export_query_encoder

    _, index = build_tiny_index(tmp_path_factory.mktemp("served"), tiny_bert)
    export_query_encoder(index)
    return index


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of a Milvus 2.3 standalone server for the session (data in a temporary folder), stopped at the
    end. Skipped where ``milvus-server`` is not installed, unless MAKE_REQUIRE_MILVUS is set (``.ci/run``
    sets it, so CI cannot skip the server tests silently); a server that does not start fails."""
    if server_command() is None:
        message = f"milvus-server not installed (pip install milvus); CI sets {REQUIRE_ENV}"
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(message)
        pytest.skip(message)
    try:
        with milvus_server(tmp_path_factory.mktemp("milvus-server"), STARTUP_S) as uri:
            yield uri
    except RuntimeError as error:
        pytest.fail(f"Milvus server: {error}")
