"""Exact top-k by position: what validation, mining and the benchmark search with."""

from __future__ import annotations

import numpy as np

from make_retrieval.index import exact
from make_retrieval.index.exact import exact_top_k


def test_equals_brute_force_in_blocks(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    products, queries = rng.standard_normal((300, 16)), rng.standard_normal((50, 16))
    monkeypatch.setattr(exact, "BLOCK_SCORES", 300 * 7)  # 7 queries a block: several blocks and a short last one
    scores, positions = exact_top_k(queries, products, 10)
    truth = np.argsort(-(queries @ products.T), axis=1, kind="stable")[:, :10]
    assert positions.tolist() == truth.tolist()
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ products.T, truth, axis=1), rtol=1e-5)


def test_ties_keep_catalog_order_and_short_catalogs_are_padded() -> None:
    products = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.5, 0.0]], dtype=np.float32)
    scores, positions = exact_top_k(np.array([[1.0, 0.0]]), products, 6)
    assert positions.tolist() == [[1, 2, 3, 0, -1, -1]]
    assert scores[0, :4].tolist() == [1.0, 1.0, 0.5, 0.0] and np.isneginf(scores[0, 4:]).all()
