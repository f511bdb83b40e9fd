"""Single-query search latency by mode: dense (MAKE), lexical (BM25) and hybrid (both, fused).

Opens an index folder as ``search`` and ``serve`` do (the ONNX query encoder when exported, one
thread for FAISS and onnxruntime, as ``serve`` runs each request), searches the data directory's
test queries one at a time in each mode, in alternating rounds, and reports p50, p99 and mean per
query. Hybrid's cost over dense is BM25 over the catalog plus the candidates' vector look-up.

    python bench/hybrid_latency.py --index runs/demo/index --data data/demo --k 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import faiss
from common import latency_row, queries_of

from make_retrieval.retrieval import MODES, Index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("runs/demo/index"))
    parser.add_argument("--data", type=Path, default=Path("data/demo"))
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    index = Index.open(args.index)
    queries = queries_of(args.data)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for mode in MODES:  # warm-up
        index.search(queries[:20], args.k, mode=mode)
    for _ in range(args.rounds):
        for mode in MODES:
            for query in queries:
                started = time.perf_counter()
                index.search([query], args.k, mode=mode)
                times[mode].append((time.perf_counter() - started) * 1000)
    print(json.dumps({"products": len(index), "queries": len(queries), "fusion": index.fusion.describe()}))
    for mode, values in times.items():
        row = latency_row({"mode": mode}, values)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
