"""Evaluation: search the whole catalog for every judged query and compute IR metrics with ranx.
``ExactRetriever`` is how a trained model is searched for it (and for validation and mining): the
whole catalog embedded and searched exactly by position, with no serving index built.

Metrics of docs/METHOD.md: Recall@{10,50,100,1000} (recall hit rate), Precision@10 (relevance rate),
MRR@10 and NDCG@10 (graded); a product counts as relevant when its relevance >= 1. Per-category
NDCG@10 groups queries by the category of their most relevant products.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from make_retrieval.data.catalog import Catalog
from make_retrieval.data.pairs import Judgements
from make_retrieval.embed import embed_products, embed_queries
from make_retrieval.index.exact import exact_top_k
from make_retrieval.index.store import Hit, mean_weights_by_category
from make_retrieval.model.make import MAKEModel
from make_retrieval.retrieval import Retriever, rank_scores

METRICS = ("recall@10", "recall@50", "recall@100", "recall@1000", "precision@10", "mrr@10", "ndcg@10")
#: Products retrieved per query: the deepest cut-off among the metrics.
DEPTH = 1000


@dataclass
class EvaluationResult:
    """Mean metrics of one retriever on one split, and NDCG@10 per query category."""

    retriever: str
    split: str
    queries: int
    metrics: dict[str, float]
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the demo saves it as results.json)."""
        return asdict(self)


def query_categories(judgements: Judgements, catalog: Catalog) -> dict[str, str]:
    """Each query's category: the most common category among its most relevant products."""
    categories: dict[str, str] = {}
    for query, judged in judgements.items():
        top = max(judged.values())
        counts = Counter(catalog.categories[catalog.index[pid]] for pid, rel in judged.items() if rel == top)
        counts.pop(None, None)
        if counts:
            categories[query] = min(counts, key=lambda c: (-counts[c], c))
    return categories


def evaluate_retriever(
    retriever: Retriever, judgements: Judgements, catalog: Catalog, split: str = "test"
) -> EvaluationResult:
    """Retrieve ``DEPTH`` products per query from the whole catalog and score them."""
    queries = sorted(judgements)
    per_query = score_hits(queries, retriever.search(queries, DEPTH), judgements)
    metrics = {m: float(np.mean(per_query[m])) for m in METRICS}
    categories = query_categories(judgements, catalog)
    # ranx orders per-query scores like the qrels' sorted query ids, as ``queries`` is.
    per_category: dict[str, dict[str, float]] = {}
    for category in sorted(set(categories.values())):
        rows = [i for i, q in enumerate(queries) if categories.get(q) == category]
        per_category[category] = {
            "queries": len(rows),
            "ndcg@10": float(np.mean(per_query["ndcg@10"][rows])),
        }
    return EvaluationResult(retriever.name, split, len(queries), metrics, per_category)


def score_hits(queries: list[str], hits: list[list[Hit]], judgements: Judgements) -> dict[str, np.ndarray]:
    """Every metric of ``METRICS`` per query (sorted ``queries``, one hit list each), with ranx."""
    from ranx import Qrels, Run, evaluate  # imported here: ranx's numba start-up costs seconds

    with warnings.catch_warnings():
        # numba, compiling ranx's kernels, warns about its own id hashing ("unsafe cast from uint64
        # to int64") in the middle of a command's output; harmless, and nothing a user can act on
        warnings.filterwarnings("ignore", message="unsafe cast from uint64 to int64")
        qrels = Qrels({q: dict(judgements[q]) for q in queries})
        run = Run({q: rank_scores(h) for q, h in zip(queries, hits, strict=True) if h})
        return evaluate(qrels, run, list(METRICS), return_mean=False, make_comparable=True)


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
        return exact_top_k(self.encode(queries)[0], self.vectors, k)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-k hits per query over the whole catalog."""
        return self.search_vectors(self.encode(queries)[0], k)

    def encode(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Query vectors and a(q) (``retrieval.DenseChannel``: the dense side of hybrid search)."""
        return embed_queries(self.model, queries)

    def search_vectors(self, vectors: np.ndarray, k: int, category: str | None = None) -> list[list[Hit]]:
        """Top-k hits of query vectors over the whole catalog (evaluation filters no category)."""
        if category is not None:
            raise ValueError("ExactRetriever searches the whole catalog; it has no category filter")
        scores, positions = exact_top_k(vectors, self.vectors, k)
        ids = self.catalog.product_ids
        return [
            [Hit(ids[p], s) for s, p in zip(row_s, row_p, strict=True) if p >= 0]
            for row_s, row_p in zip(scores.tolist(), positions.tolist(), strict=True)
        ]

    def vectors_of(self, product_ids: Sequence[str]) -> np.ndarray:
        """The catalog products' vectors."""
        return self.vectors[[self.catalog.index[pid] for pid in product_ids]]

    def weights_by_category(self) -> dict[str, dict[str, float]]:
        """Mean modality weights b(p) per product category (and the product count)."""
        return mean_weights_by_category(self.catalog.categories, self.weights, self.model.modalities)
