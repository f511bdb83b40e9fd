"""Hard-negative mining with the current model's own index (MGDSPR-style, docs/METHOD.md, Pre-training).

Before an epoch, the whole catalog is embedded and every training query searched; the products it
ranks highest that the query never clicked become that query's candidates, and each batch draws one
per query as an extra negative column. Clicked products are skipped, since they are relevant.
"""

from __future__ import annotations

from collections import defaultdict

from make_retrieval.data.catalog import Catalog
from make_retrieval.data.pairs import Clicks
from make_retrieval.evaluate import ExactRetriever
from make_retrieval.model.make import MAKEModel


def mine_hard_negatives(model: MAKEModel, catalog: Catalog, clicks: Clicks, depth: int) -> dict[str, list[int]]:
    """For each training query, up to ``depth`` top-ranked catalog positions it never clicked."""
    clicked: dict[str, set[int]] = defaultdict(set)
    for query, product in zip(clicks.queries, clicks.products, strict=True):
        clicked[query].add(product)
    queries = sorted(clicked)
    deepest = depth + max(len(c) for c in clicked.values())
    _, positions = ExactRetriever(model, catalog).top_k(queries, deepest)
    return {
        query: [p for p in row if p >= 0 and p not in clicked[query]][:depth]
        for query, row in zip(queries, positions.tolist(), strict=True)
    }
