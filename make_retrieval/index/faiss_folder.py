"""What a FAISS index folder holds besides the FAISS structure: the product table
(``products.parquet``: one row per FAISS row, text columns, deleted flags, modality weights) and the
manifest's counts, sha256 checksums and stamps of every file ``ProductIndex.load`` verifies."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from make_retrieval.config import IndexConfig
from make_retrieval.errors import IndexFileError
from make_retrieval.files import file_sha256, file_stamp
from make_retrieval.index.store import StoredProduct, write_manifest

#: Files of an index folder whose sha256 the manifest records and ``load`` verifies (``write`` names
#: them in this order).
CHECKED_FILES = ("index.faiss", "embeddings.npy", "products.parquet")
#: One part of a streamed build: products and their vectors, in row order.
Part = tuple[Sequence[StoredProduct], np.ndarray]


def new_manifest(
    manifest: dict[str, Any], dim: int, modalities: Sequence[str], config: IndexConfig
) -> dict[str, Any]:
    """A new FAISS folder's manifest: what the caller knows (model, catalog) plus the store's own."""
    return {
        "backend": "faiss",
        **manifest,
        "dimension": dim,
        "modalities": list(modalities),
        "index": asdict(config),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def seal(folder: Path, manifest: dict[str, Any], count: int, rows: int, categories: list[str]) -> dict[str, Any]:
    """Record the counts and every checked file's sha256 and stamp in ``manifest``, then write it
    (last: a folder whose files were not all written has no matching manifest)."""
    manifest.update(count=count, rows=rows, categories=categories)
    manifest["checksum"] = {name: file_sha256(folder / name) for name in CHECKED_FILES}
    manifest["stamps"] = {name: file_stamp(folder / name) for name in CHECKED_FILES}
    write_manifest(folder, manifest)
    return manifest


def check_count(folder: Path, count: int, rows: int) -> None:
    """A streamed build's parts must hold the ``count`` rows it was sized for."""
    if rows != count:
        raise IndexFileError(f"{folder}: expected {count} products, the parts held {rows}")


def table_schema(modalities: Sequence[str]) -> pa.Schema:
    """The product table's schema: fixed, so that a table written part by part has one type per column
    (a part whose categories are all missing would otherwise read as a null column)."""
    text = [pa.field(name, pa.string()) for name in ("product_id", "title", "category", "image", "metadata")]
    weights = [pa.field(f"weight_{name}", pa.float32()) for name in modalities]
    return pa.schema([*text, pa.field("deleted", pa.bool_()), *weights])


def arrow_table(
    columns: dict[str, list[Any]], deleted: np.ndarray, weights: np.ndarray, modalities: Sequence[str]
) -> pa.Table:
    """The product table as stored: the text columns, the deleted flags, one column per modality weight."""
    data: dict[str, Any] = {**columns, "deleted": deleted}
    for i, name in enumerate(modalities):
        data[f"weight_{name}"] = weights[:, i].astype(np.float32)
    return pa.table(data, schema=table_schema(modalities))


def product_columns(products: Sequence[StoredProduct]) -> dict[str, list[Any]]:
    """The product table's text columns (metadata as JSON text: parsed only for returned hits)."""
    return {
        "product_id": [p.product_id for p in products],
        "title": [p.title for p in products],
        "category": [p.category for p in products],
        "image": [p.image for p in products],
        "metadata": [json.dumps(p.metadata, default=str, ensure_ascii=False) for p in products],
    }


def weight_rows(products: Sequence[StoredProduct], modalities: Sequence[str]) -> np.ndarray:
    """(N, M) modality weights of ``products`` in ``modalities`` order."""
    rows = [[p.weights[m] for m in modalities] for p in products]
    return np.array(rows, dtype=np.float32).reshape(-1, len(modalities))


def gather_rows(parts: Iterable[Part], rows: np.ndarray, dim: int) -> tuple[np.ndarray, int]:
    """(the vectors at ``rows`` (sorted) of the parts in one array, the parts' row count): a streamed
    build's training set, complete only if the parts hold every row the draw was made for."""
    sample = np.zeros((len(rows), dim), dtype=np.float32)
    start = taken = 0
    for _, vectors in parts:
        wanted = rows[(rows >= start) & (rows < start + len(vectors))]
        sample[taken : taken + len(wanted)] = vectors[wanted - start]
        start, taken = start + len(vectors), taken + len(wanted)
    return sample, start
