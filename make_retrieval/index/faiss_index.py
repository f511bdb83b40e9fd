"""The product index on disk: FAISS index, vectors, product table with modality weights, manifest.

Inner product is the metric throughout: the MAKE score is an inner product of the query and product
vectors (see model/make.py), so no normalisation is applied here. Exact (Flat) search is the default
because evaluation must search the whole catalog exactly; HNSW and IVF-PQ are there for big catalogs.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from make_retrieval.data.catalog import Catalog

INDEX_KINDS = ("flat", "hnsw", "ivfpq")


@dataclass
class IndexConfig:
    """Which FAISS structure to build and its knobs (defaults suit 10^4-10^7 products)."""

    kind: str = "flat"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    #: IVF lists; None = about 4 * sqrt(N), at most N / 39 so that k-means has enough points.
    ivf_lists: int | None = None
    #: PQ sub-quantisers; None = the largest divisor of the dimension that is <= dimension / 4.
    pq_m: int | None = None
    ivf_nprobe: int = 16


def build_faiss(vectors: np.ndarray, config: IndexConfig) -> faiss.Index:
    """Build and fill the index for ``vectors`` (N, D) float32."""
    count, dim = vectors.shape
    if config.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif config.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.hnsw_ef_construction
        index.hnsw.efSearch = config.hnsw_ef_search
    elif config.kind == "ivfpq":
        lists = config.ivf_lists or max(1, min(int(4 * count**0.5), count // 39))
        pq_m = config.pq_m or max(m for m in range(1, dim // 4 + 1) if dim % m == 0)
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, lists, pq_m, 8, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = config.ivf_nprobe
    else:
        raise ValueError(f"unknown index kind '{config.kind}'; choose one of {INDEX_KINDS}")
    index.add(vectors)
    return index


@dataclass
class ProductIndex:
    """Vectors of a catalog, searchable, with what search prints for each hit."""

    index: faiss.Index
    vectors: np.ndarray
    product_ids: list[str]
    titles: list[str]
    weights: np.ndarray  # (N, M)
    modalities: tuple[str, ...]
    categories: list[str | None] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        catalog: Catalog,
        vectors: np.ndarray,
        weights: np.ndarray,
        modalities: tuple[str, ...],
        config: IndexConfig,
        model_info: dict[str, Any],
    ) -> ProductIndex:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        manifest = {
            "model": model_info,
            "dimension": int(vectors.shape[1]),
            "count": int(vectors.shape[0]),
            "modalities": list(modalities),
            "index": asdict(config),
            "checksum": {"embeddings.npy": _sha256(vectors)},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        return cls(
            build_faiss(vectors, config),
            vectors,
            list(catalog.product_ids),
            list(catalog.titles),
            weights,
            modalities,
            list(catalog.categories),
            manifest,
        )

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row positions (-1 where fewer than k results exist), both (Q, k)."""
        k = min(k, len(self.product_ids))
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / "index.faiss"))
        np.save(folder / "embeddings.npy", self.vectors)
        columns: dict[str, Any] = {
            "product_id": self.product_ids,
            "title": self.titles,
            "category": self.categories,
        }
        for i, name in enumerate(self.modalities):
            columns[f"weight_{name}"] = self.weights[:, i].astype(np.float32)
        pq.write_table(pa.table(columns), folder / "products.parquet")
        (folder / "manifest.json").write_text(json.dumps(self.manifest, indent=2))

    @classmethod
    def load(cls, folder: Path) -> ProductIndex:
        """Load and verify the embeddings against the manifest's checksum."""
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{folder} is not an index folder (no manifest.json); run 'embed' first")
        manifest = json.loads(manifest_path.read_text())
        vectors = np.load(folder / "embeddings.npy")
        if _sha256(vectors) != manifest["checksum"]["embeddings.npy"]:
            raise ValueError(f"{folder / 'embeddings.npy'} does not match the checksum in manifest.json")
        table = pq.read_table(folder / "products.parquet").to_pydict()
        modalities = tuple(manifest["modalities"])
        weights = np.stack([np.asarray(table[f"weight_{m}"]) for m in modalities], axis=1)
        index = faiss.read_index(str(folder / "index.faiss"))
        return cls(
            index, vectors, table["product_id"], table["title"], weights, modalities, table["category"], manifest
        )


def _sha256(vectors: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(vectors).tobytes()).hexdigest()
