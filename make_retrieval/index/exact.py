"""Exact inner-product top-k over a matrix of product vectors, by position: what validation,
hard-negative mining, the benchmark and FAISS's small filtered searches use (no index is built)."""

from __future__ import annotations

import numpy as np

#: Query rows scored at once are capped so that one (rows x products) score block stays about this big.
BLOCK_SCORES = 1 << 25


def exact_top_k(queries: np.ndarray, products: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, positions), each (Q, k), best first; ties keep the lower position first. With fewer
    than k products the rest is padded with -inf and -1, as FAISS pads."""
    queries = np.asarray(queries, dtype=np.float32)
    count = len(products)
    k_found = min(k, count)
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    found = np.full((len(queries), k), -1, dtype=np.int64)
    if not k_found:
        return scores, found
    matrix = np.asarray(products, dtype=np.float32)
    step = max(1, BLOCK_SCORES // count)
    for start in range(0, len(queries), step):
        similarity = queries[start : start + step] @ matrix.T
        # positions ascending before the stable sort by score: equal scores keep catalog order
        top = np.sort(np.argpartition(-similarity, k_found - 1, axis=1)[:, :k_found], axis=1)
        top_scores = np.take_along_axis(similarity, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        scores[start : start + step, :k_found] = np.take_along_axis(top_scores, order, axis=1)
        found[start : start + step, :k_found] = np.take_along_axis(top, order, axis=1)
    return scores, found


def exact_top_k_among(
    vectors: np.ndarray, rows: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k among ``rows`` of ``vectors`` only: (scores, row numbers), -1 padded like FAISS."""
    scores, positions = exact_top_k(queries, vectors[rows], k)
    return scores, np.where(positions >= 0, rows[positions], -1)
