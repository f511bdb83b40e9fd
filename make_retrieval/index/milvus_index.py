"""The Milvus product store: one collection holding each product's vector and stored fields.

The same code serves Milvus Lite (``uri`` a local ``.db`` file, from the ``milvus-lite`` package: tests
and one machine) and a Milvus server or cluster (``uri`` ``http://host:19530``; tests/test_milvus_server.py
runs a 2.3 standalone server) for catalogs that outgrow one machine's memory: the service then holds
neither vectors nor product table, Milvus does. The index folder keeps only ``manifest.json`` (backend,
uri, collection, model). Milvus Lite builds FLAT (exact) whatever index is asked; a server builds the
HNSW or IVF-PQ named here on each sealed segment of 1,024 rows or more (``save`` flushes, which seals
them); it searches other rows without it (exactly, or through a temporary IVF index), as it does the new
segments until it has loaded them indexed, seconds after the flush.

Collections are read at Session consistency: a client sees its own writes at once, where Bounded (the
server's default) misses those of the last seconds and Strong waits for the server's next time tick
(200 ms) on every search. Category and image are strings, ``""`` for none: Milvus before 2.5 has no
nullable fields (and the catalog reads an empty cell as none).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from make_retrieval.config import IndexConfig
from make_retrieval.errors import IndexFileError
from make_retrieval.index.store import Hit, StoredProduct, json_safe, read_manifest, write_manifest

#: Rows per insert/upsert request (Milvus caps the size of one request).
WRITE_BATCH = 1_000
#: Longest title / id / category / image path a collection accepts (VARCHAR max_length).
MAX_ID, MAX_TEXT = 512, 8_192
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"}
FIELDS = ["product_id", "title", "category", "image", "weights", "metadata"]


def _pymilvus() -> ModuleType:
    """pymilvus, or a clear error naming the extra that installs it (imported only when used)."""
    try:
        return importlib.import_module("pymilvus")
    except ImportError as error:
        raise IndexFileError("Milvus needs pymilvus and milvus-lite: pip install 'make-retrieval[milvus]'") from error


def _index_params(config: IndexConfig, manifest: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(Milvus index type, build params, search params) equivalent to our FAISS ``config`` for the
    manifest's vectors (their dimension and count size the IVF lists and PQ codes as FAISS does)."""
    if config.kind == "hnsw":
        build = {"M": config.hnsw_m, "efConstruction": config.hnsw_ef_construction}
        return "HNSW", build, {"ef": config.hnsw_ef_search}
    if config.kind == "ivfpq":
        count = manifest.get("count", 0)
        build = {
            "nlist": config.ivf_lists_for(count),
            "m": config.pq_m_for(manifest["dimension"]),
            "nbits": config.pq_bits_for(count),
        }
        return "IVF_PQ", build, {"nprobe": config.ivf_nprobe}
    return "FLAT", {}, {}


class MilvusIndex:
    """Products in a Milvus collection (a VectorStore)."""

    def __init__(self, uri: str, collection: str, manifest: dict[str, Any]):
        MilvusClient = _pymilvus().MilvusClient

        self.uri, self.collection, self.manifest = uri, collection, manifest
        self.modalities = tuple(manifest["modalities"])
        self.client = MilvusClient(uri)
        self._search_params = _index_params(IndexConfig(**manifest["index"]), manifest)[2]

    @classmethod
    def create(
        cls, uri: str, collection: str, manifest: dict[str, Any], config: IndexConfig, replace: bool = False
    ) -> MilvusIndex:
        """Create an empty collection for vectors of ``manifest['dimension']`` (refuses to replace an
        existing one unless ``replace``); ``manifest`` is the FAISS index's, re-labelled."""
        pymilvus = _pymilvus()
        DataType, MilvusClient = pymilvus.DataType, pymilvus.MilvusClient

        client = MilvusClient(uri)
        if client.has_collection(collection):
            if not replace:
                raise IndexFileError(f"Milvus collection '{collection}' already exists at {uri}; pass --replace")
            client.drop_collection(collection)
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("product_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=manifest["dimension"])
        schema.add_field("title", DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field("category", DataType.VARCHAR, max_length=MAX_ID)
        schema.add_field("image", DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field("weights", DataType.JSON)
        schema.add_field("metadata", DataType.JSON)
        kind, build, _ = _index_params(config, manifest)
        index_params = client.prepare_index_params()
        index_params.add_index(field_name="vector", index_type=kind, metric_type="IP", params=build)
        client.create_collection(collection, schema=schema, index_params=index_params, consistency_level="Session")
        client.close()
        return cls.connect(uri, collection, manifest, config)

    @classmethod
    def connect(cls, uri: str, collection: str, manifest: dict[str, Any], config: IndexConfig) -> MilvusIndex:
        """The store of an existing collection made by ``create`` with the same arguments (what each
        rank of a torchrun ingest opens after rank 0 created it)."""
        manifest = {
            **{k: v for k, v in manifest.items() if k not in ("checksum", "rows", "stamps")},
            "backend": "milvus",
            "uri": uri,
            "collection": collection,
            "index": asdict(config),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        return cls(uri, collection, manifest)

    @classmethod
    def load(cls, folder: Path) -> MilvusIndex:
        """Connect to the collection named by ``folder/manifest.json``."""
        manifest = read_manifest(folder)
        uri = manifest["uri"]
        if "://" not in uri and not Path(uri).is_absolute():  # Milvus Lite file beside the manifest
            uri = str(folder / uri)
        store = cls(uri, manifest["collection"], manifest)
        if not store.client.has_collection(store.collection):
            raise IndexFileError(f"{folder}: Milvus at {uri} has no collection '{store.collection}'")
        # a Milvus Lite file opened by another process than the one that wrote it has its collection
        # released (Lite keeps the load state in memory); a server keeps it loaded
        state = store.client.get_load_state(store.collection)["state"]
        if getattr(state, "name", state) == "NotLoad":
            store.client.load_collection(store.collection)
        return store

    def __len__(self) -> int:
        """Live products (``count(*)``: a cluster's collection statistics count deleted rows until
        it compacts)."""
        return int(self.client.query(self.collection, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def search(self, queries: np.ndarray, k: int, category: str | None = None) -> list[list[Hit]]:
        """Top-k products per query row; the category filter is a Milvus boolean expression."""
        found = self.client.search(
            self.collection,
            data=np.asarray(queries, dtype=np.float32).tolist(),
            limit=k,
            filter=f"category == {_literal(category)}" if category is not None else "",
            output_fields=["product_id"],  # Milvus 2.3 calls the key of a hit "id" unless it is asked for
            search_params={"metric_type": "IP", "params": self._params(k)},
        )
        return [[Hit(h["product_id"], float(h["distance"])) for h in hits] for hits in found]

    def _params(self, k: int) -> dict[str, Any]:
        """Search parameters for top-``k``: HNSW refuses an ``ef`` below k, so it is raised to k."""
        if "ef" in self._search_params:
            return {**self._search_params, "ef": max(self._search_params["ef"], k)}
        return self._search_params

    def get(self, product_ids: Sequence[str]) -> list[StoredProduct | None]:
        """Stored fields of each id (None if absent), fetched ``WRITE_BATCH`` ids per request."""
        by_id: dict[str, dict[str, Any]] = {}
        for start in range(0, len(product_ids), WRITE_BATCH):
            chunk = list(product_ids[start : start + WRITE_BATCH])
            by_id.update(
                (row["product_id"], row) for row in self.client.get(self.collection, ids=chunk, output_fields=FIELDS)
            )
        return [_product(by_id[pid]) if pid in by_id else None for pid in product_ids]

    def add(self, products: Sequence[StoredProduct], vectors: np.ndarray) -> None:
        """Upsert products (a product already present is replaced)."""
        if np.shape(vectors) != (len(products), self.manifest["dimension"]):
            raise IndexFileError(
                f"add: expected ({len(products)}, {self.manifest['dimension']}) vectors, got {np.shape(vectors)}"
            )
        for start in range(0, len(products), WRITE_BATCH):
            chunk = products[start : start + WRITE_BATCH]
            rows = [
                {
                    "product_id": p.product_id,
                    "vector": vector,
                    "title": p.title,
                    "category": p.category or "",
                    "image": p.image or "",
                    "weights": p.weights,
                    "metadata": json_safe(p.metadata),
                }
                for p, vector in zip(chunk, np.asarray(vectors[start : start + WRITE_BATCH]).tolist(), strict=True)
            ]
            self.client.upsert(self.collection, rows)
        known = set(self.manifest.get("categories", []))
        self.manifest["categories"] = sorted(known | {p.category for p in products if p.category is not None})

    def delete(self, product_ids: Sequence[str]) -> int:
        """Delete products; returns how many of the ids were present."""
        present = [p.product_id for p in self.get(product_ids) if p is not None]
        if present:
            self.client.delete(self.collection, ids=present)
            # Milvus 2.3 answers a delete without its timestamp, so Session reads would not wait for it: one
            # Strong read does, and the reads after it see the deletes
            self.client.query(self.collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
        return len(present)

    def vectors_of(self, product_ids: Sequence[str]) -> np.ndarray:
        """Stored vectors of the ids (zeros for an id not present), ``WRITE_BATCH`` ids per request."""
        found: dict[str, list[float]] = {}
        for start in range(0, len(product_ids), WRITE_BATCH):
            chunk = list(product_ids[start : start + WRITE_BATCH])
            rows = self.client.get(self.collection, ids=chunk, output_fields=["product_id", "vector"])
            found.update((row["product_id"], row["vector"]) for row in rows)
        out = np.zeros((len(product_ids), self.manifest["dimension"]), dtype=np.float32)
        for i, pid in enumerate(product_ids):
            if pid in found:
                out[i] = found[pid]
        return out

    def ids(self) -> list[str]:
        """Every product id, read in pages by a query iterator."""
        return [row["product_id"] for row in self._rows(["product_id"])]

    def _rows(self, fields: list[str]) -> Iterator[dict[str, Any]]:
        iterator = self.client.query_iterator(self.collection, batch_size=WRITE_BATCH, output_fields=fields)
        try:
            while page := iterator.next():
                yield from page
        finally:
            iterator.close()

    def categories(self) -> list[str]:
        """Categories ever added (Milvus has no DISTINCT; a deleted category stays, and matches nothing)."""
        return list(self.manifest.get("categories", []))

    def save(self, folder: Path) -> None:
        """Flush the collection and write the manifest that ``open_store`` reads."""
        self.client.flush(self.collection)
        folder.mkdir(parents=True, exist_ok=True)
        self.manifest["count"] = len(self)
        write_manifest(folder, self.manifest)


def _literal(text: str) -> str:
    """``text`` as a Milvus string literal. Milvus Lite has no filter parameters (``filter_params``), so
    the value is escaped: backslash, quote and line breaks, the characters its parser treats specially
    (tests/test_index.py searches categories made of each)."""
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in text) + '"'


def _product(row: dict[str, Any]) -> StoredProduct:
    """A row as a StoredProduct: an empty category or image (null in collections made before) is None."""
    category, image = row.get("category") or None, row.get("image") or None
    return StoredProduct(row["product_id"], row["title"], category, image, row["weights"], row["metadata"])
