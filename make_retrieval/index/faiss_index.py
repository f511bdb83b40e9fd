"""The FAISS product store: FAISS index, vectors and product table in one folder, searched in-process.

Inner product is the metric throughout: the MAKE score is an inner product of the query and product
vectors (see model/make.py), so no normalisation is applied here. Exact (Flat) search is the default
because evaluation must search the whole catalog exactly; HNSW and IVF-PQ are there for big catalogs.

FAISS ids are row numbers of the product table. Deleting marks the row dead (HNSW cannot remove a
node) and search skips dead rows with an ID selector; ``save`` rebuilds the FAISS structure from the
live rows once dead ones pass ``COMPACT_FRACTION``, so they never cost more than that.
A category filter is an ID selector too, except that a category of at most ``EXACT_FILTER_ROWS``
products is searched exactly over its own vectors: HNSW misses results under a restrictive filter,
and a small matrix product is cheaper than walking the whole graph.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow.parquet as pq

from make_retrieval.config import INDEX_KINDS, IndexConfig
from make_retrieval.errors import IndexFileError
from make_retrieval.files import replacing, same_file
from make_retrieval.index.exact import exact_top_k_among
from make_retrieval.index.faiss_folder import (
    CHECKED_FILES,
    Part,
    arrow_table,
    check_count,
    gather_rows,
    new_manifest,
    product_columns,
    seal,
    table_schema,
    weight_rows,
)
from make_retrieval.index.store import Hit, StoredProduct, mean_weights_by_category, read_manifest

#: IVF-PQ trains 2^bits centroids per sub-quantiser on >= 39 points each; below 16 it is pointless.
MIN_PQ_CENTROIDS = 16
#: A category filter keeping at most this many rows is searched exactly over those rows.
EXACT_FILTER_ROWS = 20_000
#: ``save`` rebuilds the FAISS structure when this share of its rows are deleted.
COMPACT_FRACTION = 0.25


#: FAISS's k-means trains on at most this many points per centroid (it samples the rest away), so a
#: streamed IVF-PQ build draws that many rows to train on instead of holding the catalog.
TRAINING_POINTS_PER_CENTROID = 256


def new_faiss(count: int, dim: int, config: IndexConfig) -> faiss.Index:
    """An empty index of ``config.kind`` with its knobs, sized for ``count`` vectors of ``dim``
    (IVF-PQ still to be trained)."""
    if config.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if config.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.hnsw_ef_construction
        index.hnsw.efSearch = config.hnsw_ef_search
        return index
    if config.kind == "ivfpq":
        if count < 39 * MIN_PQ_CENTROIDS:
            raise IndexFileError(
                f"ivfpq needs at least {39 * MIN_PQ_CENTROIDS} products to train (got {count}); use flat or hnsw"
            )
        lists, pq_m, bits = config.ivf_lists_for(count), config.pq_m_for(dim), config.pq_bits_for(count)
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, lists, pq_m, bits, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = config.ivf_nprobe
        return index
    raise IndexFileError(f"unknown index kind '{config.kind}'; choose one of {INDEX_KINDS}")


def build_faiss(vectors: np.ndarray, config: IndexConfig) -> faiss.Index:
    """Build and fill the index for ``vectors`` (N, D) float32 (IVF-PQ trained on all of them)."""
    index = new_faiss(*vectors.shape, config)
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    return index


def training_rows(index: faiss.Index, count: int, seed: int = 0) -> np.ndarray:
    """Sorted rows of ``count`` to train an untrained IVF-PQ ``index`` on: all of them up to what its
    coarse and PQ k-means would use (``TRAINING_POINTS_PER_CENTROID`` each), else a random draw."""
    centroids = max(index.nlist, 1 << faiss.downcast_index(index).pq.nbits)
    wanted = min(count, TRAINING_POINTS_PER_CENTROID * centroids)
    if wanted == count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=wanted, replace=False))


class ProductIndex:
    """Vectors of a catalog in a FAISS index, with what search returns for each hit (a VectorStore)."""

    def __init__(
        self,
        index: faiss.Index,
        vectors: np.ndarray,
        table: dict[str, list[Any]],
        weights: np.ndarray,
        modalities: tuple[str, ...],
        config: IndexConfig,
        manifest: dict[str, Any],
        deleted: np.ndarray | None = None,
    ):
        """``table``: product_id, title, category, image and metadata (JSON text) columns, one entry
        per FAISS row; ``weights`` (rows, M) are the products' modality weights b(p)."""
        self.index, self.vectors, self.table, self.weights = index, vectors, table, weights
        self.modalities, self.config, self.manifest = modalities, config, manifest
        self.deleted = np.zeros(len(vectors), dtype=bool) if deleted is None else deleted
        self.rows = {pid: r for r, pid in enumerate(table["product_id"]) if not self.deleted[r]}
        self._filters: dict[str | None, tuple[np.ndarray, Any, np.ndarray] | None] = {}
        self._by_category: dict[str, list[int]] | None = None

    @classmethod
    def build(
        cls,
        products: Sequence[StoredProduct],
        vectors: np.ndarray,
        modalities: tuple[str, ...],
        config: IndexConfig,
        manifest: dict[str, Any],
    ) -> ProductIndex:
        """Index ``vectors`` (one row per product); ``manifest`` brings what the store cannot know:
        the model that made the vectors and the catalog folder the image paths are relative to."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        manifest = new_manifest(manifest, int(vectors.shape[1]), modalities, config)
        weights = weight_rows(products, modalities)
        columns = product_columns(products)
        return cls(build_faiss(vectors, config), vectors, columns, weights, modalities, config, manifest)

    @staticmethod
    def write(
        folder: Path,
        parts: Callable[[], Iterable[Part]],
        count: int,
        dim: int,
        modalities: tuple[str, ...],
        config: IndexConfig,
        manifest: dict[str, Any],
    ) -> dict[str, Any]:
        """Write an index folder from ``parts`` (a fresh iterator of (products, vectors) in row order
        per call) without holding them all: embeddings.npy and products.parquet are appended part by
        part and the FAISS structure is filled as they come; IVF-PQ first trains on rows drawn in a
        first pass (``training_rows``). The process holds the FAISS structure (every vector for flat
        and HNSW, only PQ codes for IVF-PQ) and one part. Returns the manifest; ``load`` opens it."""
        manifest = new_manifest(manifest, dim, modalities, config)
        index = new_faiss(count, dim, config)
        if not index.is_trained:
            sample, rows = gather_rows(parts(), training_rows(index, count), dim)
            check_count(folder, count, rows)
            index.train(sample)
        folder.mkdir(parents=True, exist_ok=True)
        categories: set[str] = set()
        rows = 0
        with contextlib.ExitStack() as files:
            stored, npy, table = (files.enter_context(replacing(folder / name)) for name in CHECKED_FILES)
            handle = files.enter_context(npy.open("wb"))
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False}
            np.lib.format.write_array_header_1_0(handle, {**header, "shape": (count, dim)})
            writer = files.enter_context(pq.ParquetWriter(table, table_schema(modalities)))
            for products, vectors in parts():
                vectors = np.ascontiguousarray(vectors, dtype=np.float32)
                index.add(vectors)
                handle.write(vectors.tobytes())
                live = np.zeros(len(products), dtype=bool)
                weights = weight_rows(products, modalities)
                writer.write_table(arrow_table(product_columns(products), live, weights, modalities))
                categories.update(p.category for p in products if p.category is not None)
                rows += len(products)
            check_count(folder, count, rows)
            faiss.write_index(index, str(stored))
        return seal(folder, manifest, count, rows, sorted(categories))

    def __len__(self) -> int:
        return len(self.rows)

    def search(self, queries: np.ndarray, k: int, category: str | None = None) -> list[list[Hit]]:
        """Top-k live products per query row, by inner product; only ``category``'s if given."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if category is not None and category not in self._category_rows():
            return [[] for _ in queries]
        k = max(1, min(k, len(self.vectors)))
        allowed = self._allowed(category)
        rerank = self.config.ivf_rerank if self.config.kind == "ivfpq" else 0
        fetch = min(k * rerank, len(self.vectors)) if rerank else k
        if allowed is not None and len(allowed[0]) <= EXACT_FILTER_ROWS:
            scores, rows = exact_top_k_among(self.vectors, allowed[0], queries, k)
        else:
            params = None if allowed is None else self._params(allowed[1])
            scores, rows = self.index.search(queries, fetch, params=params)
            if rerank:
                scores, rows = self._rerank(queries, rows, k)
        ids = self.table["product_id"]
        return [
            [Hit(ids[r], float(s)) for s, r in zip(row_s, row_r, strict=True) if r >= 0]
            for row_s, row_r in zip(scores.tolist(), rows.tolist(), strict=True)
        ]

    def _rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k among each query's candidate rows, read from the (memory-mapped) vectors."""
        scores = np.empty((len(queries), k), dtype=np.float32)
        rows = np.empty((len(queries), k), dtype=np.int64)
        for i, query in enumerate(queries):
            found = np.sort(candidates[i][candidates[i] >= 0])  # ascending rows: sequential reads
            scores[i], rows[i] = (part[0] for part in exact_top_k_among(self.vectors, found, query[None], k))
        return scores, rows

    def _allowed(self, category: str | None) -> tuple[np.ndarray, Any, np.ndarray] | None:
        """(rows, FAISS selector, the bitmap it reads) that a search may return; None = every row.
        Cached per category until the next add or delete; ``category`` must be one the store has
        (a client's made-up value must not add a cache entry)."""
        if category not in self._filters:
            if category is None and not self.deleted.any():
                self._filters[category] = None
            else:
                mask = ~self.deleted
                if category is not None:
                    mask = np.zeros(len(self.deleted), dtype=bool)
                    mask[self._category_rows()[category]] = True
                bits = np.packbits(mask, bitorder="little")  # the selector reads this buffer: keep it
                selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
                self._filters[category] = (np.flatnonzero(mask), selector, bits)
        return self._filters[category]

    def _category_rows(self) -> dict[str, list[int]]:
        """Live rows of each category, built in one pass and kept until the next add or delete."""
        if self._by_category is None:
            categories = self.table["category"]
            self._by_category = {}
            for row in self.rows.values():
                if categories[row] is not None:
                    self._by_category.setdefault(categories[row], []).append(row)
        return self._by_category

    def _params(self, selector: Any) -> faiss.SearchParameters:
        """Search parameters of this index kind carrying ``selector`` (they replace the index's own
        efSearch / nprobe, so those are set again)."""
        if self.config.kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = self.config.hnsw_ef_search
        elif self.config.kind == "ivfpq":
            params = faiss.SearchParametersIVF()
            params.nprobe = self.config.ivf_nprobe
        else:
            params = faiss.SearchParameters()
        params.sel = selector
        return params

    def _forget_filters(self) -> None:
        """Drop what ``_allowed`` and ``_category_rows`` cached: the live rows changed."""
        self._filters.clear()
        self._by_category = None

    def get(self, product_ids: Sequence[str]) -> list[StoredProduct | None]:
        """Stored fields of each id (None if absent or deleted)."""
        return [self._product(self.rows[pid]) if pid in self.rows else None for pid in product_ids]

    def _product(self, row: int) -> StoredProduct:
        table = self.table
        return StoredProduct(
            table["product_id"][row],
            table["title"][row],
            table["category"][row],
            table["image"][row],
            dict(zip(self.modalities, self.weights[row].tolist(), strict=True)),
            json.loads(table["metadata"][row]),
        )

    def add(self, products: Sequence[StoredProduct], vectors: np.ndarray) -> None:
        """Append products (a product already present is replaced: its old row dies)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(products), self.vectors.shape[1]):
            raise IndexFileError(
                f"add: expected ({len(products)}, {self.vectors.shape[1]}) vectors, got {vectors.shape}"
            )
        if len({p.product_id for p in products}) != len(products):
            raise IndexFileError("add: the same product_id appears twice in one call")
        self.delete([p.product_id for p in products])
        start = len(self.vectors)
        self.index.add(vectors)
        self.vectors = np.concatenate([self.vectors, vectors])
        for name, column in product_columns(products).items():
            self.table[name].extend(column)
        self.weights = np.concatenate([self.weights, weight_rows(products, self.modalities)])
        self.deleted = np.concatenate([self.deleted, np.zeros(len(products), dtype=bool)])
        self.rows.update({p.product_id: start + i for i, p in enumerate(products)})
        self._forget_filters()

    def delete(self, product_ids: Sequence[str]) -> int:
        """Mark the products' rows dead; search stops returning them at once."""
        rows = [self.rows.pop(pid) for pid in product_ids if pid in self.rows]
        if rows:
            self.deleted[rows] = True
            self._forget_filters()
        return len(rows)

    def ids(self) -> list[str]:
        """Every live product id."""
        return list(self.rows)

    def vectors_of(self, product_ids: Sequence[str]) -> np.ndarray:
        """Stored vectors of the ids (zeros for an id not live)."""
        rows = np.array([self.rows.get(pid, -1) for pid in product_ids], dtype=np.int64)
        out = np.zeros((len(rows), self.vectors.shape[1]), dtype=np.float32)
        out[rows >= 0] = self.vectors[rows[rows >= 0]]
        return out

    def categories(self) -> list[str]:
        """Sorted categories of the live products."""
        return sorted(self._category_rows())

    def weights_by_category(self) -> dict[str, dict[str, float]]:
        """Mean modality weight per category of the live products (and their count)."""
        live = ~self.deleted
        categories = [c for c, alive in zip(self.table["category"], live, strict=True) if alive]
        return mean_weights_by_category(categories, self.weights[live], self.modalities)

    def compact(self) -> bool:
        """Rebuild the FAISS structure and the table from the live rows only; False (nothing
        changed) when the live rows cannot train this kind (IVF-PQ needs 624 or more)."""
        live = np.flatnonzero(~self.deleted)
        vectors = np.ascontiguousarray(self.vectors[live])
        try:
            index = build_faiss(vectors, self.config)
        except IndexFileError:
            return False
        self.index, self.vectors = index, vectors
        self.table = {name: [column[r] for r in live] for name, column in self.table.items()}
        self.weights = self.weights[live]
        self.deleted = np.zeros(len(live), dtype=bool)
        self.rows = {pid: r for r, pid in enumerate(self.table["product_id"])}
        self._forget_filters()
        return True

    def save(self, folder: Path) -> None:
        """Write the folder (compacted first if many rows are dead); the manifest records the sha256
        of every file it depends on. Each file is written beside its old version and renamed over
        it, so saving into the folder the index was loaded from (memory-mapped vectors included)
        never reads a half-written file, and a server that has the old files open keeps them."""
        if self.deleted.mean() > COMPACT_FRACTION:
            self.compact()
        folder.mkdir(parents=True, exist_ok=True)
        with replacing(folder / "index.faiss") as path:
            faiss.write_index(self.index, str(path))
        with replacing(folder / "embeddings.npy") as path:
            np.save(path, self.vectors)
        with replacing(folder / "products.parquet") as path:
            pq.write_table(arrow_table(self.table, self.deleted, self.weights, self.modalities), path)
        seal(folder, self.manifest, len(self), len(self.vectors), self.categories())

    @classmethod
    def load(cls, folder: Path) -> ProductIndex:
        """Load an index folder after checking every file against the manifest's sha256 (a file with
        the size and time recorded at save is not read again, files.same_file); the
        vectors are memory-mapped: read by IVF-PQ re-ranking, by search within a category or once
        products are deleted when at most EXACT_FILTER_ROWS rows qualify, and by ``compact``."""
        manifest = read_manifest(folder)
        for name in CHECKED_FILES:
            path = folder / name
            if not path.is_file():
                raise IndexFileError(f"{path} is missing; rebuild the index with 'embed'")
            if not same_file(path, manifest.get("checksum", {}).get(name), manifest.get("stamps", {}).get(name)):
                raise IndexFileError(f"{path} does not match the checksum in manifest.json; rebuild with 'embed'")
        # ParquetFile, not read_table: the dataset API that read_table goes through imports pandas (a second)
        columns = pq.ParquetFile(folder / "products.parquet").read().to_pydict()
        modalities = tuple(manifest["modalities"])
        weights = np.stack([np.asarray(columns.pop(f"weight_{m}"), np.float32) for m in modalities], axis=1)
        deleted = np.asarray(columns.pop("deleted"), dtype=bool)
        return cls(
            faiss.read_index(str(folder / "index.faiss")),
            np.load(folder / "embeddings.npy", mmap_mode="r"),
            columns,
            weights,
            modalities,
            IndexConfig(**manifest["index"]),
            manifest,
            deleted,
        )
