"""Evaluation metrics against hand-computed values, and the BM25 baseline on real-format data."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from make_retrieval.data.catalog import Catalog
from make_retrieval.data.pairs import load_data_dir
from make_retrieval.evaluate import evaluate_retriever, query_categories
from make_retrieval.index.lexical import LexicalIndex
from make_retrieval.retrieval import Hit


class Fixed:
    """A retriever that returns a fixed ranking per query."""

    name = "fixed"

    def __init__(self, rankings: dict[str, list[str]]):
        self.rankings = rankings

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        return [[Hit(pid, 1.0) for pid in self.rankings.get(q, [])[:k]] for q in queries]


def test_metrics_by_hand() -> None:
    catalog = Catalog(["a", "b", "c", "d"], ["t"] * 4, [None] * 4, ["shoes", "shoes", "bags", "bags"], [{}] * 4)
    judged = {"q2": {"d": 1}, "q1": {"a": 2, "b": 1}}  # not in sorted order: per-query rows must still match
    result = evaluate_retriever(Fixed({"q1": ["c", "a", "b"]}), judged, catalog)
    ndcg_q1 = (2 / math.log2(3) + 1 / math.log2(4)) / (2 + 1 / math.log2(3))
    assert result.metrics["recall@10"] == pytest.approx(0.5)
    assert result.metrics["precision@10"] == pytest.approx(0.1)
    assert result.metrics["mrr@10"] == pytest.approx(0.25)
    assert result.metrics["ndcg@10"] == pytest.approx(ndcg_q1 / 2)
    assert result.per_category == {
        "bags": {"queries": 1, "ndcg@10": 0.0},
        "shoes": {"queries": 1, "ndcg@10": pytest.approx(ndcg_q1)},
    }
    assert result.queries == 2


def test_query_category_is_that_of_the_most_relevant_products() -> None:
    catalog = Catalog(["a", "b", "c"], ["t"] * 3, [None] * 3, ["x", "y", "y"], [{}] * 3)
    assert query_categories({"q": {"a": 2, "b": 1, "c": 1}}, catalog) == {"q": "x"}


def test_bm25_ranks_lexical_matches_first(data_dir: Path) -> None:
    data = load_data_dir(data_dir, ("test",))
    bm25 = LexicalIndex.from_catalog(data.catalog)
    hits = bm25.search(["red heels", "zzz unknown"], 5)
    assert {h.product_id for h in hits[0][:2]} == {"p010", "p011"}
    assert hits[1] == [], "no known term: no results rather than arbitrary ones"
    result = evaluate_retriever(bm25, data.judgements["test"], data.catalog)
    assert result.metrics["recall@10"] == pytest.approx(1.0)
