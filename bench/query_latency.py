"""Single-query encoding latency: the ONNX query encoder (onnxruntime) vs the PyTorch one.

Encodes the data directory's test queries one at a time (what a search request does) with each
encoder and thread count, in alternating rounds, and reports the median, p99 and mean per query.
Also checks that the two agree on every test query (minimum row cosine).

    python bench/query_latency.py --index runs/demo/index --data data/demo
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from common import latency_row, queries_of

from make_retrieval.index.store import read_manifest
from make_retrieval.model.checkpoint import load_model
from make_retrieval.query_encoder import ONNX_FOLDER, OnnxQueryEncoder, QueryEncoder, TorchQueryEncoder


def timings_ms(encoder: QueryEncoder, queries: list[str]) -> list[float]:
    """Milliseconds of each single-query call."""
    out = []
    for query in queries:
        started = time.perf_counter()
        encoder.encode([query])
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("runs/demo/index"))
    parser.add_argument("--data", type=Path, default=Path("data/demo"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    queries = queries_of(args.data)
    model = load_model(Path(read_manifest(args.index)["model"]["run"]))[0]
    torch_encoder = TorchQueryEncoder(model)
    onnx1, onnx2 = OnnxQueryEncoder(args.index / ONNX_FOLDER, 1), OnnxQueryEncoder(args.index / ONNX_FOLDER, 2)
    a, b = onnx1.encode(queries)[0], torch_encoder.encode(queries)[0]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(json.dumps({"queries": len(queries), "min_cosine_onnx_vs_torch": round(float(cosine.min()), 6)}))
    encoders = {
        "onnx, 1 thread": onnx1,
        "onnx, 2 threads": onnx2,
        "torch, 1 thread": torch_encoder,
        "torch, 2 threads": torch_encoder,
    }
    times: dict[str, list[float]] = {name: [] for name in encoders}
    for encoder in encoders.values():  # warm-up
        timings_ms(encoder, queries[:20])
    for _ in range(args.rounds):
        for name, encoder in encoders.items():
            torch.set_num_threads(1 if "1 thread" in name else 2)
            times[name] += timings_ms(encoder, queries)
    for name, values in times.items():
        row = latency_row({"encoder": name}, values)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
