"""ONNX export of the query tower: onnxruntime gives the PyTorch embeddings on many queries."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from helpers import assert_same_embeddings, many_queries, tiny_model_config
from make_retrieval.errors import CheckpointError, ConfigError
from make_retrieval.index.store import read_manifest
from make_retrieval.model.make import MAKEModel
from make_retrieval.onnx_export import export_onnx
from make_retrieval.query_encoder import BatchingEncoder, OnnxQueryEncoder, TorchQueryEncoder
from make_retrieval.retrieval import open_index


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
    stale = shutil.copytree(served_index, tmp_path / "index")  # away from its run: named below
    run = Path(read_manifest(served_index)["model"]["run"])
    info = stale / "query_encoder" / "info.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "checkpoint_sha256": "another"}))
    with pytest.raises(CheckpointError, match="exported from another checkpoint"):
        open_index(stale, run, encoder="auto")
    (stale / "query_encoder" / "model.onnx").unlink()
    assert open_index(stale, run, encoder="auto").encoder.name == "torch"
    with pytest.raises(FileNotFoundError, match="run 'make-retrieval export-onnx' first"):
        open_index(stale, encoder="onnx")


class _SlowEncoder:
    """Encodes a query as [its length, batch number]; sleeps so that callers pile up meanwhile."""

    name = "slow"

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def encode(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if "boom" in queries:
            raise ValueError("cannot encode boom")
        self.batches.append(list(queries))
        time.sleep(0.05)
        vectors = np.array([[len(q), len(self.batches)] for q in queries], dtype=np.float32)
        return vectors, np.ones((len(queries), 1), dtype=np.float32)


def test_batching_encoder_groups_concurrent_callers_and_returns_each_its_own_rows() -> None:
    slow = _SlowEncoder()
    batching = BatchingEncoder(slow, workers=1)
    queries = [["x" * n] if n % 3 else ["x" * n, "y" * (n + 1)] for n in range(1, 25)]
    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(batching.encode, queries))
    for asked, (vectors, weights) in zip(queries, results, strict=True):
        assert vectors[:, 0].tolist() == [len(q) for q in asked] and weights.shape == (len(asked), 1)
    assert sum(len(b) for b in slow.batches) == sum(len(q) for q in queries)
    assert len(slow.batches) < len(queries)  # callers that arrived while the encoder slept shared a call
    with ThreadPoolExecutor(max_workers=2) as pool:
        failing = pool.submit(batching.encode, ["boom"])
        with pytest.raises(ValueError, match="cannot encode boom"):
            failing.result()
    assert batching.encode(["after"])[0][0, 0] == 5  # the worker survived the error


def test_searching_and_serving_with_the_onnx_encoder_import_no_torch(served_index: Path) -> None:
    """The README's claim, checked: the service built on an exported index and a search through it
    load neither torch nor transformers (the tokenizer runs in ``tokenizers``)."""
    code = (
        "import sys; from make_retrieval.retrieval import Index; from make_retrieval.serve.app import create_app; "
        f"index = Index.open({str(served_index)!r}, encoder='auto'); create_app(index, None); "
        "hits = index.search(['red shirt'], k=3)[0].hits; "
        "print(index.retriever.encoder.name, len(hits), 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.split() == ["onnx", "3", "False", "False"]
