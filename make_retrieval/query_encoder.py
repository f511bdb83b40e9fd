"""Query encoding at request time: the trained query tower in PyTorch, or exported to ONNX and run by
onnxruntime (smaller process, no autograd machinery, faster on CPU; torch stays the fallback).

The export covers everything after tokenization: token ids -> query tower -> projections and a(q)
-> index vectors. Tokenization stays in the Hugging Face fast tokenizer, saved next to the graph, so
both encoders feed the network the same ids.
"""

from __future__ import annotations

import json
import queue
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from make_retrieval.embed import embed_queries
from make_retrieval.model.make import MAKEModel

#: Folder of an index that holds the exported query encoder.
ONNX_FOLDER = "query_encoder"
ONNX_FILE = "model.onnx"
INFO_FILE = "info.json"


class QueryEncoder(Protocol):
    """Maps query strings to index vectors (Q, D) and modality weights a(q) (Q, M), both float32."""

    name: str

    def encode(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]: ...


class TorchQueryEncoder:
    """The query tower of a loaded MAKE model."""

    name = "torch"

    def __init__(self, model: MAKEModel):
        self.model = model.eval()

    def encode(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors and a(q) of ``queries``."""
        return embed_queries(self.model, queries)


class _QueryGraph(nn.Module):
    """What is exported: (input_ids, attention_mask) -> (vectors, weights)."""

    def __init__(self, model: MAKEModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.encode_query_tokens(input_ids, attention_mask)
        return out.vectors, out.weights


@torch.no_grad()
def export_onnx(model: MAKEModel, folder: Path, checkpoint_sha256: str) -> Path:
    """Write ``folder/model.onnx``, the tokenizer, and ``info.json`` (which checkpoint it came from,
    so that a server never pairs it with an index of another model). Returns the graph's path."""
    folder.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    tower = model.query_encoder
    ids, mask = tower.tokenize(["red summer dress", "black leather ankle boots for women"])
    path = folder / ONNX_FILE
    # The TorchScript-based exporter: it takes a transformers BERT as it is, with dynamic batch and
    # length. Its tracer warns about Python branches on shapes; the agreement test is what counts.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _export(model, ids, mask, path)
    tower.tokenizer.save_pretrained(folder)
    info = {
        "checkpoint_sha256": checkpoint_sha256,
        "max_length": model.config.query_encoder.max_length,
        "modalities": list(model.modalities),
        "dimension": model.dim,
    }
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2))
    return path


def _export(model: MAKEModel, ids: torch.Tensor, mask: torch.Tensor, path: Path) -> None:
    """Trace the query graph on example ids into ``path``."""
    torch.onnx.export(
        _QueryGraph(model),
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["vectors", "weights"],
        dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
        opset_version=17,
        dynamo=False,
    )


class OnnxQueryEncoder:
    """The exported query tower under onnxruntime, with the tokenizer saved beside it."""

    name = "onnx"

    def __init__(self, folder: Path, threads: int = 1):
        """``threads``: intra-op threads per call; 1 lets concurrent requests use the other cores."""
        import onnxruntime
        from transformers import AutoTokenizer

        if not (folder / ONNX_FILE).is_file():
            raise FileNotFoundError(f"{folder / ONNX_FILE} not found; run 'make-retrieval export-onnx' first")
        self.info = json.loads((folder / INFO_FILE).read_text())
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors and a(q) of ``queries``."""
        batch = self.tokenizer(
            list(queries), padding=True, truncation=True, max_length=self.info["max_length"], return_tensors="np"
        )
        feed = {name: batch[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
        vectors, weights = self.session.run(["vectors", "weights"], feed)
        return vectors, weights


@dataclass
class _Pending:
    """One caller's queries, waiting for a ``BatchingEncoder`` worker."""

    queries: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    result: tuple[np.ndarray, np.ndarray] | None = None
    error: BaseException | None = None


class BatchingEncoder:
    """Encodes the queries of concurrent callers together. Each of ``workers`` threads takes every
    query waiting when it becomes free (up to ``max_batch``) and encodes them in one call. Nothing
    waits for a batch to fill, so a lone request pays nothing; under load batches form while the
    workers are busy, and one call for n short queries costs far less than n calls."""

    def __init__(self, encoder: QueryEncoder, workers: int = 1, max_batch: int = 64):
        self.encoder, self.max_batch, self.name = encoder, max_batch, encoder.name
        self.queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        for n in range(workers):
            threading.Thread(target=self._work, name=f"query-encoder-{n}", daemon=True).start()

    def encode(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors and a(q) of ``queries``, encoded along with whatever other callers are waiting."""
        pending = _Pending(list(queries))
        self.queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def _work(self) -> None:
        while True:
            batch = [self.queue.get()]
            size = len(batch[0].queries)
            while size < self.max_batch:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
                size += len(batch[-1].queries)
            try:
                vectors, weights = self.encoder.encode([q for pending in batch for q in pending.queries])
                start = 0
                for pending in batch:
                    stop = start + len(pending.queries)
                    pending.result = (vectors[start:stop], weights[start:stop])
                    start = stop
            except Exception as error:  # every caller of the batch gets the error, the worker lives on
                for pending in batch:
                    pending.error = error
            for pending in batch:
                pending.done.set()
