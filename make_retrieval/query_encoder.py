"""Query encoding at request time: the trained query tower in PyTorch, or exported to ONNX
(onnx_export.py) and run by onnxruntime (smaller process, no autograd machinery, faster on CPU;
torch stays the fallback).

The ONNX path imports neither torch nor transformers: the graph covers token ids -> query tower ->
projections and a(q) -> index vectors, and tokenization runs the Hugging Face fast tokenizer's own
``tokenizer.json`` (saved next to the graph) in the ``tokenizers`` library, with the truncation and
padding the torch tower uses, so both encoders feed the network the same ids. ``make-retrieval
search`` and ``serve`` on an exported index thus start in about a second.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

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
    """The query tower of a loaded MAKE model (torch is imported by whoever loaded the model)."""

    name = "torch"

    def __init__(self, model: MAKEModel):
        from make_retrieval.embed import embed_queries

        self.model, self._embed = model.eval(), embed_queries

    def encode(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors and a(q) of ``queries``."""
        return self._embed(self.model, queries)


class OnnxQueryEncoder:
    """The exported query tower under onnxruntime, with the tokenizer saved beside it."""

    name = "onnx"

    def __init__(self, folder: Path, threads: int = 1):
        """``threads``: intra-op threads per call; 1 lets concurrent requests use the other cores."""
        import onnxruntime

        if not (folder / ONNX_FILE).is_file():
            raise FileNotFoundError(f"{folder / ONNX_FILE} not found; run 'make-retrieval export-onnx' first")
        self.info = json.loads((folder / INFO_FILE).read_text())
        self.tokenizer = _tokenizer(folder, self.info["max_length"])
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors and a(q) of ``queries``."""
        encodings = self.tokenizer.encode_batch(list(queries))
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
        vectors, weights = self.session.run(["vectors", "weights"], feed)
        return vectors, weights


def _tokenizer(folder: Path, max_length: int) -> Tokenizer:
    """The exported fast tokenizer, truncating to ``max_length`` and padding to the longest query
    on the right, as the torch tower's ``tokenizer(..., padding=True, truncation=True)`` does."""
    from tokenizers import Tokenizer

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (a fast tokenizer is exported); run 'export-onnx' again")
    tokenizer = Tokenizer.from_file(str(path))
    pad = json.loads((folder / "tokenizer_config.json").read_text()).get("pad_token") or "[PAD]"
    pad = pad["content"] if isinstance(pad, dict) else pad
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(direction="right", pad_id=tokenizer.token_to_id(pad), pad_token=pad)
    return tokenizer


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
