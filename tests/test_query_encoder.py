"""ONNX export of the query tower: onnxruntime gives the PyTorch embeddings on many queries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import assert_same_embeddings, many_queries, tiny_model_config
from make_retrieval.config import ConfigError
from make_retrieval.model.make import MAKEModel
from make_retrieval.pipeline import open_index
from make_retrieval.query_encoder import OnnxQueryEncoder, TorchQueryEncoder, export_onnx
from make_retrieval.train.checkpoint import CheckpointError


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
