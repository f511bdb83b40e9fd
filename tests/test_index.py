"""Index round trips: every FAISS kind against brute force, save/load, checksum guard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from make_retrieval.data.catalog import Catalog
from make_retrieval.index.faiss_index import IndexConfig, IndexFileError, ProductIndex


def _catalog(n: int) -> Catalog:
    metadata = [{"colour": "red", "rank": i} for i in range(n)]
    return Catalog([f"id{i}" for i in range(n)], [f"title {i}" for i in range(n)], [None] * n, ["c"] * n, metadata)


def _vectors(n: int, dim: int = 32) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)


def _brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]


def test_flat_round_trip_equals_brute_force(tmp_path: Path) -> None:
    vectors, queries = _vectors(500), _vectors(20)[:, :] * 0.5
    weights = np.full((500, 3), 1 / 3, dtype=np.float32)
    built = ProductIndex.build(
        _catalog(500), vectors, weights, ("title", "image", "fused"), IndexConfig(), {"run": "x"}
    )
    built.save(tmp_path / "index")
    loaded = ProductIndex.load(tmp_path / "index")
    scores, positions = loaded.search(queries, 10)
    np.testing.assert_array_equal(positions, _brute_force(vectors, queries, 10))
    np.testing.assert_allclose(scores[:, 0], (queries @ vectors.T).max(1), rtol=1e-5)
    assert loaded.manifest["count"] == 500 and loaded.manifest["dimension"] == 32
    assert loaded.manifest["model"] == {"run": "x"}
    assert loaded.product_ids[positions[0, 0]] == f"id{positions[0, 0]}"
    np.testing.assert_allclose(loaded.weights, weights)
    assert loaded.metadata[7] == {"colour": "red", "rank": 7}


@pytest.mark.parametrize(("kind", "minimum"), [("hnsw", 0.95), ("ivfpq", 0.3)])
def test_approximate_kinds_find_most_true_neighbours(kind: str, minimum: float) -> None:
    vectors, queries = _vectors(2000), _vectors(50)
    index = ProductIndex.build(_catalog(2000), vectors, np.ones((2000, 1)), ("title",), IndexConfig(kind=kind), {})
    _, positions = index.search(queries, 10)
    truth = _brute_force(vectors, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(positions, truth, strict=True)])
    assert recall >= minimum


def test_k_larger_than_catalog_is_capped() -> None:
    index = ProductIndex.build(_catalog(5), _vectors(5), np.ones((5, 1)), ("title",), IndexConfig(), {})
    _, positions = index.search(_vectors(2), 100)
    assert positions.shape == (2, 5) and sorted(positions[0]) == [0, 1, 2, 3, 4]


def test_tampered_embeddings_are_refused(tmp_path: Path) -> None:
    index = ProductIndex.build(_catalog(5), _vectors(5), np.ones((5, 1)), ("title",), IndexConfig(), {})
    index.save(tmp_path)
    np.save(tmp_path / "embeddings.npy", _vectors(5) + 1)
    with pytest.raises(IndexFileError, match=r"embeddings\.npy does not match the checksum"):
        ProductIndex.load(tmp_path)
    index.save(tmp_path)
    (tmp_path / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexFileError, match=r"index\.faiss does not match the checksum"):
        ProductIndex.load(tmp_path)


def test_ivfpq_refuses_a_catalog_too_small_to_train() -> None:
    with pytest.raises(IndexFileError, match="ivfpq needs at least 624 products"):
        ProductIndex.build(_catalog(200), _vectors(200), np.ones((200, 1)), ("title",), IndexConfig(kind="ivfpq"), {})


def test_unknown_kind_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(IndexFileError, match="unknown index kind 'annoy'"):
        ProductIndex.build(_catalog(5), _vectors(5), np.ones((5, 1)), ("title",), IndexConfig(kind="annoy"), {})
    with pytest.raises(FileNotFoundError, match="not an index folder"):
        ProductIndex.load(tmp_path)
