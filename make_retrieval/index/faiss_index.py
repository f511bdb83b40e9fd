"""The product index on disk: FAISS index, vectors, product table with modality weights, manifest.

Inner product is the metric throughout: the MAKE score is an inner product of the query and product
vectors (see model/make.py), so no normalisation is applied here. Exact (Flat) search is the default
because evaluation must search the whole catalog exactly; HNSW and IVF-PQ are there for big catalogs.
"""

from __future__ import annotations

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
from make_retrieval.files import file_sha256

INDEX_KINDS = ("flat", "hnsw", "ivfpq")
#: Files of an index folder whose sha256 the manifest records and ``load`` verifies.
CHECKED_FILES = ("index.faiss", "embeddings.npy", "products.parquet")
#: IVF-PQ trains 2^bits centroids per sub-quantiser on >= 39 points each; below 16 it is pointless.
MIN_PQ_CENTROIDS = 16


class IndexFileError(ValueError):
    """An index folder that is incomplete, altered, or cannot be built as asked."""


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
        if count < 39 * MIN_PQ_CENTROIDS:
            raise IndexFileError(
                f"ivfpq needs at least {39 * MIN_PQ_CENTROIDS} products to train (got {count}); use flat or hnsw"
            )
        lists = config.ivf_lists or max(1, min(int(4 * count**0.5), count // 39))
        pq_m = config.pq_m or max(m for m in range(1, dim // 4 + 1) if dim % m == 0)
        bits = min(8, int(np.log2(count // 39)))  # 8 bits (256 centroids) once there are enough points
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, lists, pq_m, bits, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = config.ivf_nprobe
    else:
        raise IndexFileError(f"unknown index kind '{config.kind}'; choose one of {INDEX_KINDS}")
    index.add(vectors)
    return index


@dataclass
class ProductIndex:
    """Vectors of a catalog, searchable, with what search returns for each hit."""

    index: faiss.Index
    vectors: np.ndarray
    product_ids: list[str]
    titles: list[str]
    weights: np.ndarray  # (N, M): the product's modality weights b(p)
    modalities: tuple[str, ...]
    categories: list[str | None]
    metadata: list[dict[str, Any]]  # the catalog's extra columns, returned by search
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
        """Index ``vectors`` (one row per catalog product, in catalog order)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        manifest = {
            "model": model_info,
            "dimension": int(vectors.shape[1]),
            "count": int(vectors.shape[0]),
            "modalities": list(modalities),
            "index": asdict(config),
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
            list(catalog.metadata),
            manifest,
        )

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row positions (-1 where fewer than k results exist), both (Q, k)."""
        k = min(k, len(self.product_ids))
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def weights_by_category(self) -> dict[str, dict[str, float]]:
        """Mean modality weight per category (plus the product count): which categories are found
        by their picture and which by their words."""
        table: dict[str, dict[str, float]] = {}
        categories = np.array([c or "" for c in self.categories])
        for category in sorted(set(categories) - {""}):
            rows = self.weights[categories == category]
            table[category] = {
                "products": len(rows),
                **dict(zip(self.modalities, rows.mean(0).tolist(), strict=True)),
            }
        return table

    def save(self, folder: Path) -> None:
        """Write the folder; the manifest records the sha256 of every file it depends on."""
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / "index.faiss"))
        np.save(folder / "embeddings.npy", self.vectors)
        columns: dict[str, Any] = {
            "product_id": self.product_ids,
            "title": self.titles,
            "category": self.categories,
            "metadata": [json.dumps(m, default=str, ensure_ascii=False) for m in self.metadata],
        }
        for i, name in enumerate(self.modalities):
            columns[f"weight_{name}"] = self.weights[:, i].astype(np.float32)
        pq.write_table(pa.table(columns), folder / "products.parquet")
        self.manifest["checksum"] = {name: file_sha256(folder / name) for name in CHECKED_FILES}
        (folder / "manifest.json").write_text(json.dumps(self.manifest, indent=2))

    @classmethod
    def load(cls, folder: Path) -> ProductIndex:
        """Load an index folder after checking every file against the manifest's sha256."""
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{folder} is not an index folder (no manifest.json); run 'embed' first")
        manifest = json.loads(manifest_path.read_text())
        for name in CHECKED_FILES:
            path = folder / name
            if not path.is_file():
                raise IndexFileError(f"{path} is missing; rebuild the index with 'embed'")
            if file_sha256(path) != manifest.get("checksum", {}).get(name):
                raise IndexFileError(f"{path} does not match the checksum in manifest.json; rebuild with 'embed'")
        table = pq.read_table(folder / "products.parquet").to_pydict()
        modalities = tuple(manifest["modalities"])
        weights = np.stack([np.asarray(table[f"weight_{m}"]) for m in modalities], axis=1)
        return cls(
            faiss.read_index(str(folder / "index.faiss")),
            np.load(folder / "embeddings.npy"),
            table["product_id"],
            table["title"],
            weights,
            modalities,
            table["category"],
            [json.loads(m) for m in table["metadata"]],
            manifest,
        )
