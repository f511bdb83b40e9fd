"""HNSW on a real Milvus server vs FAISS HNSW on the same vectors: recall@10, single-query latency, build time.

``--count`` synthetic product vectors (seeded mixtures of real product embeddings, or of random centres
without ``--like``: ``bench/index_overhead.py``'s generator, the shape of real data, where uniform random
vectors would be HNSW's worst case) go into (a) a FAISS ``ProductIndex`` and (b) a collection made by
``MilvusIndex.create`` on a Milvus 2.3 standalone server (the ``milvus`` package, started here as the tests
start it, tests/milvus_server.py, unless ``--uri`` names a running one), both from the same
``IndexConfig(kind="hnsw")``. Each store then answers the same queries one at a time (what a search request
does) through the store interface: recall@10 is against exact inner-product search, latency is the median
and p99 per query. FAISS build time is ``ProductIndex.build``; Milvus reports the upserts (``add``) and the
time from the flush (``save``) until the server searches every row through the built index. FAISS runs
before the server starts, so the two never share the cores.

    python bench/milvus_recall.py --count 100000 --queries 500
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from index_overhead import add_basis_options, basis_of, synthetic

from make_retrieval.config import IndexConfig
from make_retrieval.index.faiss_index import ProductIndex
from make_retrieval.index.milvus_index import MilvusIndex
from make_retrieval.index.store import Hit, StoredProduct

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from milvus_server import milvus_server, wait_until_indexed

MODALITIES = ("title", "image", "fused")
K = 10


def exact_top(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Row numbers of each query's true top K by inner product."""
    scores = queries @ vectors.T
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)


def measure(search: Callable[[np.ndarray], list[list[Hit]]], queries: np.ndarray, truth: np.ndarray) -> dict:
    """Recall@K and per-query latency of ``search`` called with one query at a time (after 20 warm-up calls)."""
    for query in queries[:20]:
        search(query[None])
    found, times = [], []
    for query in queries:
        started = time.perf_counter()
        hits = search(query[None])[0]
        times.append(time.perf_counter() - started)
        found.append({int(h.product_id[1:]) for h in hits})
    recall = np.mean([len(f & set(t)) / K for f, t in zip(found, truth, strict=True)])
    return {
        "recall@10": round(float(recall), 4),
        "p50_ms": round(float(np.percentile(times, 50)) * 1e3, 2),
        "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 2),
    }


@contextmanager
def server(uri: str | None) -> Iterator[str]:
    """``uri``, or a server of our own in a temporary folder for the duration."""
    if uri:
        yield uri
        return
    with tempfile.TemporaryDirectory(prefix="milvus-bench-") as folder, milvus_server(Path(folder)) as started:
        yield started


def faiss_hnsw(
    products: list[StoredProduct], vectors: np.ndarray, config: IndexConfig, queries: np.ndarray, truth: np.ndarray
) -> dict:
    """Build time, recall and latency of a FAISS ``ProductIndex``."""
    started = time.perf_counter()
    store = ProductIndex.build(products, vectors, MODALITIES, config, {})
    build_s = time.perf_counter() - started
    return {
        "backend": "faiss-hnsw",
        "build_s": round(build_s, 1),
        **measure(lambda q: store.search(q, K), queries, truth),
    }


def milvus_hnsw(
    uri: str,
    products: list[StoredProduct],
    vectors: np.ndarray,
    config: IndexConfig,
    queries: np.ndarray,
    truth: np.ndarray,
    index_timeout: float,
) -> dict:
    """Upsert and index times, recall and latency of a ``MilvusIndex`` collection (dropped afterwards)."""
    manifest = {"dimension": vectors.shape[1], "count": len(vectors), "modalities": list(MODALITIES), "model": {}}
    started = time.perf_counter()
    store = MilvusIndex.create(uri, "bench_milvus_recall", manifest, config, replace=True)
    store.add(products, vectors)
    insert_s = time.perf_counter() - started
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="milvus-index-") as folder:
        store.save(Path(folder))
    wait_until_indexed(store.client, store.collection, len(vectors), index_timeout)
    index_s = time.perf_counter() - started
    row = {"backend": "milvus-hnsw", "server": store.client.get_server_version(), "insert_s": round(insert_s, 1)}
    row |= {"flush_to_indexed_s": round(index_s, 1), **measure(lambda q: store.search(q, K), queries, truth)}
    store.client.drop_collection(store.collection)
    store.client.close()
    return row


def report(row: dict, out: Path) -> None:
    """Print ``row`` as a JSON line and append it to ``out``."""
    line = json.dumps(row)
    print(line, flush=True)
    with out.open("a") as handle:
        handle.write(line + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    add_basis_options(parser)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--uri", help="a running Milvus server (default: start one)")
    parser.add_argument("--index-timeout", type=float, default=1800, help="seconds the server may take to index")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/milvus_recall.jsonl"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = IndexConfig(kind="hnsw")
    basis, source = basis_of(args.like, args.dim)
    vectors, queries = synthetic(args.count, 1, basis), synthetic(args.queries, 2, basis)
    truth = exact_top(vectors, queries)
    weights = dict(zip(MODALITIES, (1 / 3, 1 / 3, 1 / 3), strict=True))
    products = [StoredProduct(f"p{i}", f"product {i}", f"c{i % 50}", None, weights, {}) for i in range(args.count)]
    common = {"products": args.count, "dim": basis.shape[1], "vectors": source, "queries": args.queries}
    common |= {"cores": os.cpu_count()}
    common |= {"M": config.hnsw_m, "ef_construction": config.hnsw_ef_construction, "ef_search": config.hnsw_ef_search}
    load = {"load_avg_1m": round(os.getloadavg()[0], 2)}  # the whole machine's, before the runs
    # FAISS first, before the server starts: the two never share the cores
    report({**faiss_hnsw(products, vectors, config, queries, truth), **common, **load}, args.out)
    with server(args.uri) as uri:
        row = milvus_hnsw(uri, products, vectors, config, queries, truth, args.index_timeout)
        report({**row, **common, **load}, args.out)


if __name__ == "__main__":
    main()
