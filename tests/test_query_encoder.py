"""ONNX export of the query tower: onnxruntime gives the PyTorch embeddings on many queries."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import COLOURS, TYPES, tiny_model_config
from make_retrieval.config import ConfigError
from make_retrieval.model.make import MAKEModel
from make_retrieval.pipeline import open_index
from make_retrieval.query_encoder import OnnxQueryEncoder, TorchQueryEncoder, export_onnx
from make_retrieval.train.checkpoint import CheckpointError


def many_queries(count: int, seed: int = 0) -> list[str]:
    """Queries of 1 to 20 words (longer than max_length, so truncation is covered), some non-ASCII."""
    words = [*COLOURS, *TYPES, "summer", "dress", "for", "men", "women", "leather", "鞋", "größe", "x1", "-"]
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 20))) for _ in range(count)]


def assert_same_embeddings(onnx: OnnxQueryEncoder, torch_encoder: TorchQueryEncoder, queries: list[str]) -> None:
    """Row-wise cosine > 0.999 between the two encoders' vectors; the same modality weights."""
    for start in range(0, len(queries), 50):  # mixed batch sizes and paddings
        batch = queries[start : start + 50 - start // 10]
        (a, weights_a), (b, weights_b) = onnx.encode(batch), torch_encoder.encode(batch)
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() > 0.999, cosine.min()
        np.testing.assert_allclose(weights_a, weights_b, atol=1e-4)


def test_onnx_query_encoder_agrees_with_torch(tiny_bert: Path, tmp_path: Path) -> None:
    model = MAKEModel(tiny_model_config(tiny_bert))
    export_onnx(model, tmp_path / "qe", "sha")
    onnx = OnnxQueryEncoder(tmp_path / "qe")
    assert onnx.info["checkpoint_sha256"] == "sha" and onnx.info["dimension"] == model.dim
    queries = many_queries(300)
    assert_same_embeddings(onnx, TorchQueryEncoder(model), queries)
    single = onnx.encode(["red heels"])[0]
    assert single.shape == (1, model.dim)


def test_serving_picks_the_encoder_and_refuses_a_mismatched_export(served_index: Path, tmp_path: Path) -> None:
    assert open_index(served_index).encoder.name == "torch"  # the default of the library call
    assert open_index(served_index, encoder="auto").encoder.name == "onnx"
    with pytest.raises(ConfigError, match="unknown encoder 'tf'"):
        open_index(served_index, encoder="tf")
    stale = shutil.copytree(served_index, tmp_path / "index")
    info = stale / "query_encoder" / "info.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "checkpoint_sha256": "another"}))
    with pytest.raises(CheckpointError, match="exported from another checkpoint"):
        open_index(stale, encoder="auto")
    (stale / "query_encoder" / "model.onnx").unlink()
    assert open_index(stale, encoder="auto").encoder.name == "torch"
    with pytest.raises(FileNotFoundError, match="run 'make-retrieval export-onnx' first"):
        open_index(stale, encoder="onnx")
