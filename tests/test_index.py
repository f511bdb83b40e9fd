"""Vector stores: every FAISS kind against brute force, save/load, checksum guard, and the behaviour
every backend shares (FAISS, Milvus Lite and a Milvus server alike): category filter, add, replace,
delete, get. tests/test_milvus_server.py checks the server's HNSW and IVF_PQ indexes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from make_retrieval.config import IndexConfig
from make_retrieval.data.catalog import Catalog
from make_retrieval.embed import stored_products
from make_retrieval.errors import IndexFileError
from make_retrieval.index.faiss_index import EXACT_FILTER_ROWS, ProductIndex
from make_retrieval.index.folder import open_store
from make_retrieval.index.milvus_index import MilvusIndex
from make_retrieval.index.store import StoredProduct, VectorStore

MODALITIES = ("title", "image", "fused")


def _catalog(n: int, categories: int = 1) -> Catalog:
    metadata = [{"colour": "red", "rank": i} for i in range(n)]
    ids, titles = [f"id{i}" for i in range(n)], [f"title {i}" for i in range(n)]
    return Catalog(ids, titles, [None] * n, [f"c{i % categories}" for i in range(n)], metadata)


def _vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _weights(n: int) -> np.ndarray:
    return np.random.default_rng(1).dirichlet(np.ones(3), n).astype(np.float32)


def _brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]


def _rows(hits: list) -> list[int]:
    return [int(h.product_id[2:]) for h in hits]


#: What an index manifest says of its model (an absolute path: the folder keeps it relative to itself).
RUN_INFO = {"model": {"run": "/runs/x"}}


def _build(n: int, config: IndexConfig | None = None, categories: int = 1) -> ProductIndex:
    products = stored_products(_catalog(n, categories), _weights(n), MODALITIES)
    return ProductIndex.build(products, _vectors(n), MODALITIES, config or IndexConfig(), RUN_INFO)


def test_flat_round_trip_equals_brute_force(tmp_path: Path) -> None:
    vectors, queries = _vectors(500), _vectors(20, seed=1)
    _build(500).save(tmp_path / "index")
    loaded = open_store(tmp_path / "index")
    assert isinstance(loaded, ProductIndex)
    hits = loaded.search(queries, 10)
    assert [_rows(h) for h in hits] == _brute_force(vectors, queries, 10).tolist()
    np.testing.assert_allclose([h[0].score for h in hits], (queries @ vectors.T).max(1), rtol=1e-5)
    assert loaded.manifest["count"] == 500 and loaded.manifest["dimension"] == 32
    assert loaded.manifest["model"] == RUN_INFO["model"] and loaded.manifest["backend"] == "faiss"
    assert json.loads((tmp_path / "index" / "manifest.json").read_text())["model"]["run"].startswith("../"), (
        "paths are kept relative to the folder"
    )
    product = loaded.get(["id7"])[0]
    assert product is not None and product.metadata == {"colour": "red", "rank": 7}
    np.testing.assert_allclose(list(product.weights.values()), _weights(500)[7], rtol=1e-6)


@pytest.mark.parametrize(
    ("config", "minimum"),
    [
        (IndexConfig(kind="hnsw"), 0.95),
        (IndexConfig(kind="ivfpq", ivf_rerank=0), 0.3),
        (IndexConfig(kind="ivfpq"), 0.6),
    ],
)
def test_approximate_kinds_find_most_true_neighbours(config: IndexConfig, minimum: float) -> None:
    vectors, queries = _vectors(2000), _vectors(50, seed=1)
    hits = _build(2000, config).search(queries, 10)
    truth = _brute_force(vectors, queries, 10)
    recall = np.mean([len(set(_rows(h)) & set(t)) / 10 for h, t in zip(hits, truth, strict=True)])
    assert recall >= minimum, recall
    if config.kind == "ivfpq" and config.ivf_rerank:  # re-ranked scores are the exact inner products
        for query, row in zip(queries, hits, strict=True):
            np.testing.assert_allclose([h.score for h in row], vectors[_rows(row)] @ query, rtol=1e-5)


def test_k_larger_than_catalog_is_capped() -> None:
    hits = _build(5).search(_vectors(2, seed=1), 100)
    assert [sorted(_rows(h)) for h in hits] == [[0, 1, 2, 3, 4]] * 2


def test_tampered_embeddings_are_refused(tmp_path: Path) -> None:
    index = _build(5)
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
        _build(200, IndexConfig(kind="ivfpq"))


def test_unknown_kind_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(IndexFileError, match="unknown index kind 'annoy'"):
        _build(5, IndexConfig(kind="annoy"))
    with pytest.raises(FileNotFoundError, match="not an index folder"):
        ProductIndex.load(tmp_path)


@pytest.fixture(params=["flat", "hnsw", "milvus-lite", pytest.param("milvus-server", marks=pytest.mark.slow)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> VectorStore:
    """400 products in 4 categories, in each backend; reopened from its folder like a server would.
    Milvus Lite is a local file; the Milvus server (the session's, tests/milvus_server.py) gets a collection
    of its own."""
    kind = "hnsw" if request.param == "hnsw" else "flat"
    faiss_store = _build(400, IndexConfig(kind=kind), categories=4)
    if not request.param.startswith("milvus"):
        faiss_store.save(tmp_path / "index")
        return open_store(tmp_path / "index")
    if request.param == "milvus-lite":
        uri, collection = str(tmp_path / "milvus.db"), "products"
    else:
        uri, collection = request.getfixturevalue("milvus_uri"), f"products_{uuid.uuid4().hex}"
    milvus = MilvusIndex.create(uri, collection, faiss_store.manifest, IndexConfig())
    milvus.add(faiss_store.get(faiss_store.ids()), _vectors(400))
    milvus.save(tmp_path / "index")
    milvus.client.close()
    return open_store(tmp_path / "index")


def _new(pid: str, category: str = "c9") -> StoredProduct:
    """A product to add; its weights are exact in float32, so a round trip compares equal."""
    weights = dict(zip(MODALITIES, (0.5, 0.25, 0.25), strict=True))
    return StoredProduct(pid, f"new {pid}", category, "images/x.jpg", weights, {"n": 1})


def test_every_backend_searches_filters_adds_and_deletes(store: VectorStore) -> None:
    vectors, queries = _vectors(400), _vectors(5, seed=1)
    assert len(store) == 400 and store.categories() == ["c0", "c1", "c2", "c3"]
    assert [_rows(h) for h in store.search(queries, 10)] == _brute_force(vectors, queries, 10).tolist()
    # category filter: the exact top 10 among that category's products
    in_c2 = np.arange(2, 400, 4)
    truth = in_c2[_brute_force(vectors[in_c2], queries, 10)]
    assert [_rows(h) for h in store.search(queries, 10, category="c2")] == truth.tolist()
    assert store.search(queries, 10, category="nothing") == [[]] * 5

    # add: a new product equal to the first query is its top hit; replacing id3 moves id3 there too
    store.add([_new("fresh"), _new("id3")], np.stack([queries[0], queries[1]]) * 10)
    assert len(store) == 401 and "c9" in store.categories()
    top = store.search(queries[:2], 3)
    assert top[0][0].product_id == "fresh" and top[1][0].product_id == "id3"
    assert [h.product_id for h in top[1]].count("id3") == 1  # the replaced row is gone, not duplicated
    assert store.get(["id3"])[0] == _new("id3")
    assert [h.product_id for h in store.search(queries[:1], 5, category="c9")[0]] == ["fresh", "id3"]

    # a category made of the characters a filter expression treats specially is matched literally
    odd = 'say "hi"\\ it\'s\n{category} or category != ""'
    store.add([_new("odd", odd)], queries[:1])
    assert [h.product_id for h in store.search(queries[:1], 5, category=odd)[0]] == ["odd"]
    assert store.delete(["odd"]) == 1

    # delete: gone from search, get and ids at once; unknown ids are not counted
    nearest = truth[0, 0]
    assert store.delete(["fresh", f"id{nearest}", "unknown"]) == 2
    assert len(store) == 399 and store.get(["fresh", "id0"])[0] is None
    assert "fresh" not in store.ids() and len(store.ids()) == 399
    remaining = [h.product_id for h in store.search(queries[:1], 10, category="c2")[0]]
    assert f"id{nearest}" not in remaining and remaining[0] == f"id{truth[0, 1]}"


def test_faiss_filter_through_the_ann_index_and_compaction(tmp_path: Path) -> None:
    """A category bigger than EXACT_FILTER_ROWS goes through HNSW with an ID selector; saving after
    many deletes rebuilds the index from the live rows."""
    n = 2 * EXACT_FILTER_ROWS + 2000
    vectors, queries = _vectors(n, dim=16), _vectors(20, dim=16, seed=1)
    catalog = _catalog(n, categories=2)
    products = stored_products(catalog, _weights(n), MODALITIES)
    index = ProductIndex.build(products, vectors, MODALITIES, IndexConfig(kind="hnsw"), {})
    evens = np.arange(0, n, 2)
    truth = evens[_brute_force(vectors[evens], queries, 10)]
    found = [_rows(h) for h in index.search(queries, 10, category="c0")]
    assert all(r % 2 == 0 for rows in found for r in rows)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.9
    index.delete([f"id{i}" for i in range(0, n // 2)])
    index.save(tmp_path)
    reopened = ProductIndex.load(tmp_path)
    assert len(reopened.vectors) == n - n // 2 and not reopened.deleted.any()  # compacted
    assert all(r >= n // 2 for h in reopened.search(queries, 10) for r in _rows(h))


def test_add_refuses_wrong_shapes_and_duplicate_ids() -> None:
    index = _build(5)
    with pytest.raises(IndexFileError, match=r"expected \(1, 32\) vectors"):
        index.add([_new("a")], np.zeros((1, 8), np.float32))
    with pytest.raises(IndexFileError, match="same product_id appears twice"):
        index.add([_new("a"), _new("a")], np.zeros((2, 32), np.float32))


def test_saving_into_the_folder_it_was_loaded_from_keeps_the_vectors(tmp_path: Path) -> None:
    """The vectors are memory-mapped from that folder: saving there must not read a half-written file."""
    vectors, queries = _vectors(300), _vectors(5, seed=1)
    _build(300).save(tmp_path)
    loaded = ProductIndex.load(tmp_path)
    assert loaded.delete(["id0", "id1"]) == 2  # few deletes: no compaction, the mapped array is saved as is
    loaded.save(tmp_path)
    again = ProductIndex.load(tmp_path)
    np.testing.assert_array_equal(np.asarray(again.vectors), vectors)
    live = np.arange(2, 300)
    truth = live[_brute_force(vectors[live], queries, 10)]
    assert [_rows(h) for h in again.search(queries, 10)] == truth.tolist()
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_unknown_categories_return_nothing_and_are_not_cached() -> None:
    index = _build(100, categories=4)
    for n in range(50):
        assert index.search(_vectors(1, seed=1), 5, category=f"made-up {n}") == [[]]
    assert index._filters == {}  # a client's made-up values must not grow the server's memory
    assert len(index.search(_vectors(1, seed=1), 5, category="c1")[0]) == 5


def test_ivfpq_too_small_to_retrain_keeps_its_dead_rows_on_save(tmp_path: Path) -> None:
    index = _build(700, IndexConfig(kind="ivfpq"))
    index.delete([f"id{i}" for i in range(200)])  # 29% dead, but 500 live rows cannot train IVF-PQ
    index.save(tmp_path)
    reopened = ProductIndex.load(tmp_path)
    assert len(reopened) == 500 and int(reopened.deleted.sum()) == 200
    assert all(r >= 200 for h in reopened.search(_vectors(5, seed=1), 10) for r in _rows(h))


def _parts(n: int, size: int, categories: int = 3) -> list[tuple[list[StoredProduct], np.ndarray]]:
    """The ``_build(n)`` products and vectors in parts of ``size`` rows; the last part has no categories
    (a column that is all missing in one part must keep its type in the written table)."""
    catalog, vectors = _catalog(n, categories), _vectors(n)
    catalog.categories[n - size :] = [None] * size
    products = stored_products(catalog, _weights(n), MODALITIES)
    return [(products[s : s + size], vectors[s : s + size]) for s in range(0, n, size)]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_a_folder_written_part_by_part_equals_one_built_in_memory(kind: str, tmp_path: Path) -> None:
    """``ProductIndex.write`` (embed's sharded path) gives the folder ``build`` + ``save`` give; IVF-PQ
    trains on every row while they fit its k-means (so on the same rows)."""
    config, parts = IndexConfig(kind=kind), _parts(1200, 300)
    products = [p for chunk, _ in parts for p in chunk]
    vectors = np.concatenate([v for _, v in parts])
    ProductIndex.build(products, vectors, MODALITIES, config, RUN_INFO).save(tmp_path / "built")
    calls: list[int] = []

    def stream() -> list[tuple[list[StoredProduct], np.ndarray]]:
        calls.append(1)
        return parts

    manifest = ProductIndex.write(tmp_path / "written", stream, 1200, 32, MODALITIES, config, RUN_INFO)
    assert len(calls) == (2 if kind == "ivfpq" else 1), "IVF-PQ reads the parts once more to train"
    built, written = ProductIndex.load(tmp_path / "built"), ProductIndex.load(tmp_path / "written")
    assert manifest == written.manifest and manifest["count"] == 1200 and manifest["categories"] == ["c0", "c1", "c2"]
    np.testing.assert_array_equal(written.vectors, vectors)
    assert written.table == built.table and written.table["category"][-1] is None
    np.testing.assert_array_equal(written.weights, built.weights)
    queries = _vectors(20, seed=1)
    want = built.search(queries, 10)
    if kind == "hnsw":  # the graph depends on insertion batches: judge it by its neighbours
        truth = _brute_force(vectors, queries, 10)
        got = written.search(queries, 10)
        assert np.mean([len(set(_rows(h)) & set(t)) / 10 for h, t in zip(got, truth, strict=True)]) >= 0.95
    else:
        assert [_rows(h) for h in written.search(queries, 10)] == [_rows(h) for h in want]
    assert written.search(queries[:1], 5, category="c1")[0][0].product_id in written.table["product_id"]


def test_a_streamed_ivfpq_trains_on_a_draw_and_a_short_stream_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past what k-means would use, IVF-PQ trains on a random draw of rows, not on the catalog; a
    stream that ends before ``count`` rows is an error and leaves the old folder as it was."""
    import make_retrieval.index.faiss_index as faiss_index

    monkeypatch.setattr(faiss_index, "TRAINING_POINTS_PER_CENTROID", 40)  # FAISS asks for 39 or more
    config, parts = IndexConfig(kind="ivfpq", ivf_lists=16), _parts(4000, 1000)
    index = faiss_index.new_faiss(4000, 32, config)
    rows = faiss_index.training_rows(index, 4000)
    assert len(rows) == 40 * (1 << index.pq.nbits) == 2560 and np.all(np.diff(rows) > 0)
    ProductIndex.write(tmp_path / "index", lambda: parts, 4000, 32, MODALITIES, config, {})
    vectors, queries = np.concatenate([v for _, v in parts]), _vectors(50, seed=1)
    hits = ProductIndex.load(tmp_path / "index").search(queries, 10)
    truth = _brute_force(vectors, queries, 10)
    assert np.mean([len(set(_rows(h)) & set(t)) / 10 for h, t in zip(hits, truth, strict=True)]) >= 0.5
    before = {p.name: p.read_bytes() for p in (tmp_path / "index").iterdir()}
    with pytest.raises(IndexFileError, match="expected 4500 products, the parts held 4000"):
        ProductIndex.write(tmp_path / "index", lambda: parts, 4500, 32, MODALITIES, config, {})
    assert {p.name: p.read_bytes() for p in (tmp_path / "index").iterdir()} == before
