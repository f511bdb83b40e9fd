"""Search through our index layer vs calling FAISS directly on the same index, ANN recall@10, memory.

For each catalog size and index kind: build a ``ProductIndex`` over synthetic product vectors (mixtures
of real product embeddings plus noise, see ``synthetic``: the shape of real data at any size), then time
single-query searches (what the service does) through ``ProductIndex.search`` and through the FAISS
index object inside it, in alternating rounds. Recall@10 is against exact inner-product search.
Memory per product: the FAISS structure's serialized size, plus the vectors kept for filtered search.

    python bench/index_overhead.py --sizes 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from make_retrieval.config import IndexConfig
from make_retrieval.data.catalog import Catalog
from make_retrieval.embed import stored_products
from make_retrieval.index.faiss_index import ProductIndex

MODALITIES = ("title", "image", "fused")


def synthetic(count: int, seed: int, basis: np.ndarray) -> np.ndarray:
    """Unit vectors ``normalize(a * u + (1 - a) * v + noise)`` for random rows u, v of ``basis`` and
    a ~ U(0, 1), noise of norm about 0.2: new points on the shape of the basis (real product
    embeddings, or random centres), not uniform on the sphere."""
    rng = np.random.default_rng(seed)
    dim = basis.shape[1]
    out = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 100_000):  # in slices: 10^6 x 384 noise at once would double the peak
        n = min(100_000, count - start)
        mix = rng.random((n, 1), dtype=np.float32)
        block = mix * basis[rng.integers(0, len(basis), n)] + (1 - mix) * basis[rng.integers(0, len(basis), n)]
        block += rng.standard_normal((n, dim), dtype=np.float32) * (0.2 / dim**0.5)
        out[start : start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def add_basis_options(parser: argparse.ArgumentParser) -> None:
    """``--like`` and ``--dim``, the options ``basis_of`` reads."""
    parser.add_argument(
        "--like",
        type=Path,
        default=Path("runs/demo/index/embeddings.npy"),
        help="real product vectors to synthesise from; random centres if the file is absent",
    )
    parser.add_argument("--dim", type=int, default=384, help="dimension of the random centres (no --like file)")


def basis_of(like: Path, dim: int) -> tuple[np.ndarray, str]:
    """The vectors ``synthetic`` mixes: real product vectors from ``like`` (an index folder's
    embeddings.npy) when the file exists, else 1000 seeded random unit centres of ``dim``; and a line
    saying which."""
    if like.is_file():
        basis = np.load(like).astype(np.float32)
        return basis, f"mixtures of the {len(basis)} product vectors in {like}"
    basis = np.random.default_rng(0).standard_normal((1000, dim), dtype=np.float32)
    return basis / np.linalg.norm(basis, axis=1, keepdims=True), "mixtures of 1000 random unit centres"


def catalog(count: int) -> Catalog:
    """A product table of ``count`` rows with short titles and 50 categories."""
    ids = [f"p{i}" for i in range(count)]
    return Catalog(
        ids, [f"product {i}" for i in range(count)], [None] * count, [f"c{i % 50}" for i in range(count)], [{}] * count
    )


def per_query_us(first: Callable, second: Callable, queries: np.ndarray) -> tuple[float, float]:
    """Mean microseconds of one single-query call of each, the two alternating query by query so
    that load and frequency drift fall on both alike; which goes first alternates too, since the
    second call of a query finds the first one's index pages in cache."""
    totals = [0.0, 0.0]
    searches = (first, second)
    for row in range(len(queries)):
        query = queries[row : row + 1]
        for slot in (0, 1) if row % 2 == 0 else (1, 0):
            started = time.perf_counter()
            searches[slot](query)
            totals[slot] += time.perf_counter() - started
    return totals[0] / len(queries) * 1e6, totals[1] / len(queries) * 1e6


#: Benchmarked configurations: "ivfpq" alone is the bare wrapper; the default re-ranks (more work, not overhead).
CONFIGS = {
    "flat": IndexConfig(kind="flat"),
    "hnsw": IndexConfig(kind="hnsw"),
    "ivfpq": IndexConfig(kind="ivfpq", ivf_rerank=0),
    "ivfpq-rerank": IndexConfig(kind="ivfpq"),
}


def measure(kind: str, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, rounds: int) -> dict:
    """Build, time both paths over ``rounds`` alternating rounds (median), recall@10, memory."""
    started = time.perf_counter()
    weights = np.full((len(vectors), 3), 1 / 3, dtype=np.float32)
    products = stored_products(catalog(len(vectors)), weights, MODALITIES)
    index = ProductIndex.build(products, vectors, MODALITIES, CONFIGS[kind], {})
    build_s = time.perf_counter() - started
    raw_index = index.index
    ours, raw = [], []
    for _ in range(rounds):
        raw_us, ours_us = per_query_us(lambda q: raw_index.search(q, 10), lambda q: index.search(q, 10), queries)
        raw.append(raw_us)
        ours.append(ours_us)
    found = np.array([[int(h.product_id[1:]) for h in hits] for hits in index.search(queries, 10)])
    recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))
    structure = len(faiss.serialize_index(raw_index))
    ours_us, raw_us = float(np.median(ours)), float(np.median(raw))
    return {
        "kind": kind,
        "products": len(vectors),
        "build_s": round(build_s, 1),
        "faiss_us": round(raw_us, 1),
        "ours_us": round(ours_us, 1),
        "overhead": round(ours_us / raw_us - 1, 4),
        "recall@10": round(recall, 4),
        "faiss_bytes_per_product": round(structure / len(vectors), 1),
        "vector_bytes_per_product": vectors.shape[1] * 4,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--kinds", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    add_basis_options(parser)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/index_overhead.jsonl"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    basis, source = basis_of(args.like, args.dim)
    dim = basis.shape[1]
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, dim {dim}, {source}", flush=True)
    for size in args.sizes:
        vectors = synthetic(size, 1, basis)
        queries = synthetic(args.queries, 2, basis)
        exact = faiss.IndexFlatIP(dim)
        exact.add(vectors)
        truth = exact.search(queries, 10)[1]
        del exact
        for kind in args.kinds:
            row = measure(kind, vectors, queries, truth, args.rounds)
            print(json.dumps(row), flush=True)
            with args.out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
