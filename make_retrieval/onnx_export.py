"""Exporting the query tower to ONNX, inside an index folder, for query_encoder.OnnxQueryEncoder.

The graph covers everything after tokenization (token ids -> query tower -> projections and a(q)
-> index vectors); the fast tokenizer is saved beside it, with ``info.json`` naming the checkpoint it
came from, so that a server never pairs it with an index of another model.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from make_retrieval.model.make import MAKEModel
from make_retrieval.query_encoder import INFO_FILE, ONNX_FILE


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
