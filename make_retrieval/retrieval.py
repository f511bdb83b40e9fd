"""Retrievers: something that maps query strings to ranked product ids over a whole catalog.

``MAKERetriever`` (query encoder + vector store) and ``BM25Retriever`` (bm25s over titles) share one
interface so that evaluation, the demo and later baselines treat them alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import bm25s
import numpy as np

from make_retrieval.data.catalog import Catalog
from make_retrieval.data.keywords import tokenize
from make_retrieval.embed import embed_products, embed_queries
from make_retrieval.index.exact import exact_top_k
from make_retrieval.index.store import Hit, StoredProduct, VectorStore, mean_weights_by_category
from make_retrieval.model.make import MAKEModel
from make_retrieval.query_encoder import QueryEncoder


class Retriever(Protocol):
    """Anything that ranks catalog products for query strings."""

    name: str

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]: ...


class MAKERetriever:
    """Encodes queries with the trained query tower and searches a product store."""

    name = "MAKE"

    def __init__(self, encoder: QueryEncoder, store: VectorStore):
        self.encoder, self.store = encoder, store

    def search(self, queries: Sequence[str], k: int, category: str | None = None) -> list[list[Hit]]:
        """Top-k hits per query (only ``category``'s products if given)."""
        return self.search_with_weights(queries, k, category)[0]

    def search_with_weights(
        self, queries: Sequence[str], k: int, category: str | None = None
    ) -> tuple[list[list[Hit]], np.ndarray]:
        """Top-k hits per query and each query's modality weights a(q), shape (Q, M)."""
        vectors, query_weights = self.encoder.encode(queries)
        return self.store.search(vectors, k, category), query_weights

    def search_products(
        self, queries: Sequence[str], k: int, category: str | None = None
    ) -> tuple[list[list[tuple[StoredProduct, float]]], np.ndarray]:
        """Top-k (stored product, score) pairs per query and each query's a(q): what the CLI and the
        service show. A product deleted between search and fetch is skipped."""
        found, query_weights = self.search_with_weights(queries, k, category)
        results = []
        for hits in found:
            products = self.store.get([hit.product_id for hit in hits])
            results.append([(p, hit.score) for hit, p in zip(hits, products, strict=True) if p is not None])
        return results, query_weights


class BM25Retriever:
    """Lexical baseline over titles, with the same tokenizer as Keyword Enhancement."""

    name = "BM25"

    def __init__(self, catalog: Catalog):
        self.product_ids = catalog.product_ids
        self.bm25 = bm25s.BM25()
        self.bm25.index([tokenize(t) for t in catalog.titles], show_progress=False)
        self.vocabulary = set(self.bm25.vocab_dict)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        k = min(k, len(self.product_ids))
        results: list[list[Hit]] = []
        for query in queries:
            terms = [t for t in tokenize(query) if t in self.vocabulary]
            if not terms:  # nothing to match: BM25 returns nothing rather than arbitrary products
                results.append([])
                continue
            positions, scores = self.bm25.retrieve([terms], k=k, show_progress=False)
            results.append(
                [Hit(self.product_ids[p], float(s)) for p, s in zip(positions[0], scores[0], strict=True) if s > 0]
            )
        return results


def rank_scores(hits: list[Hit]) -> dict[str, float]:
    """ranx wants {product_id: score}; equal scores are broken by rank so the order survives."""
    count = len(hits)
    return {h.product_id: float(count - r) for r, h in enumerate(hits)}


class ExactRetriever:
    """A model's embedding of the whole catalog searched exactly, by catalog position: what
    validation, hard-negative mining, ``evaluate --run`` and the benchmark use. No serving index
    (FAISS structure, product table) is built, and ids are looked up only for the hits returned."""

    name = "MAKE"

    def __init__(self, model: MAKEModel, catalog: Catalog):
        self.model, self.catalog = model, catalog
        self.vectors, self.weights = embed_products(model, catalog, progress=False)

    def top_k(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, catalog positions) of each query's top k, best first (-1 past the catalog's end)."""
        vectors, _ = embed_queries(self.model, queries)
        return exact_top_k(vectors, self.vectors, k)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-k hits per query over the whole catalog."""
        scores, positions = self.top_k(queries, k)
        ids = self.catalog.product_ids
        return [
            [Hit(ids[p], s) for s, p in zip(row_s, row_p, strict=True) if p >= 0]
            for row_s, row_p in zip(scores.tolist(), positions.tolist(), strict=True)
        ]

    def weights_by_category(self) -> dict[str, dict[str, float]]:
        """Mean modality weights b(p) per product category (and the product count)."""
        return mean_weights_by_category(self.catalog.categories, self.weights, self.model.modalities)
