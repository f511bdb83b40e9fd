"""Opening an index folder: its ``manifest.json`` names the backend (FAISS or Milvus) that reads it."""

from __future__ import annotations

from pathlib import Path

from make_retrieval.errors import IndexFileError
from make_retrieval.index.faiss_index import ProductIndex
from make_retrieval.index.milvus_index import MilvusIndex
from make_retrieval.index.store import VectorStore, read_manifest


def open_store(folder: Path) -> VectorStore:
    """Open an index folder with the backend its manifest names (FAISS when none is named)."""
    backend = read_manifest(folder).get("backend", "faiss")
    if backend == "faiss":
        return ProductIndex.load(folder)
    if backend == "milvus":
        return MilvusIndex.load(folder)
    raise IndexFileError(f"{folder}/manifest.json names an unknown backend '{backend}' (faiss or milvus)")
