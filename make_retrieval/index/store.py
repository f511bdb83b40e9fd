"""What every vector store of products offers: search (optionally within one category), fetch by id,
incremental add and delete. FAISS (``faiss_index.py``, in-process) and Milvus (``milvus_index.py``,
Milvus Lite or a cluster by URI) implement it; the retriever, the service and ``sync`` see only this.

An index folder always holds ``manifest.json``; its ``backend`` says which store opens it, and the
paths it names (the run, the catalog folder) are kept relative to the index folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from make_retrieval.files import replacing


@dataclass(slots=True)
class Hit:
    """One retrieved product."""

    product_id: str
    score: float
    #: Hybrid search: the channels ("dense", "lexical") that proposed the product, with its rank in
    #: each (1 = first); None for a single channel's own hit.
    channels: dict[str, int] | None = None


@dataclass(slots=True)
class StoredProduct:
    """What the index keeps about a product besides its vector, and what search results show."""

    product_id: str
    title: str
    category: str | None
    #: Image path relative to the catalog folder (the manifest's ``data``); None = text-only.
    image: str | None
    weights: dict[str, float]
    metadata: dict[str, Any]

    def fields(self) -> tuple[str, str | None, str | None, dict[str, Any]]:
        """What ``sync`` compares with the catalog: everything but the weights, which the model sets."""
        return self.title, self.category, self.image, self.metadata

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the CLI and the service print it)."""
        return {
            "product_id": self.product_id,
            "title": self.title,
            "category": self.category,
            "image": self.image,
            "weights": self.weights,
            "metadata": self.metadata,
        }


class VectorStore(Protocol):
    """A searchable, updatable set of product vectors with their stored fields."""

    modalities: tuple[str, ...]
    manifest: dict[str, Any]

    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int, category: str | None = None) -> list[list[Hit]]:
        """Top-k products by inner product for each query row, only ``category``'s if given."""
        ...

    def get(self, product_ids: Sequence[str]) -> list[StoredProduct | None]:
        """The stored products, None for an id that is not in the store."""
        ...

    def add(self, products: Sequence[StoredProduct], vectors: np.ndarray) -> None:
        """Insert products, replacing any with the same id (no rebuild of what is there)."""
        ...

    def delete(self, product_ids: Sequence[str]) -> int:
        """Remove products; returns how many of the ids were in the store."""
        ...

    def ids(self) -> list[str]:
        """Every product id in the store."""
        ...

    def vectors_of(self, product_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of ``product_ids`` (N, D) float32, zeros for an id not in the store:
        hybrid search scores every candidate with both channels."""
        ...

    def categories(self) -> list[str]:
        """Sorted categories of the products (for a filter menu)."""
        ...

    def save(self, folder: Path) -> None:
        """Write the folder (manifest included) so that ``open_store`` reopens this state."""
        ...


def json_safe(value: Any) -> Any:
    """``value`` as it reads back from JSON (dates and other objects become strings), which is how
    every store keeps metadata."""
    return json.loads(json.dumps(value, default=str))


def mean_weights_by_category(
    categories: Sequence[str | None], weights: np.ndarray, modalities: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Mean modality weight per category (plus the product count), one entry per row of ``weights``:
    which categories are found by their picture and which by their words."""
    labels = np.array([c or "" for c in categories])
    table: dict[str, dict[str, float]] = {}
    for category in sorted(set(labels.tolist()) - {""}):
        rows = weights[labels == category]
        table[category] = {"products": len(rows), **dict(zip(modalities, rows.mean(0).tolist(), strict=True))}
    return table


#: Manifest entries that are paths: (section or None, key). They are written relative to the index
#: folder, so that a folder copied with the run and catalog beside it (or all three to another
#: machine) finds them there, and read back as absolute paths.
MANIFEST_PATHS = ((None, "data"), ("model", "run"), ("model", "data"))


def _map_paths(manifest: dict[str, Any], change: Callable[[str], str]) -> dict[str, Any]:
    """A copy of ``manifest`` with ``change`` applied to every path entry that is set."""
    copied = {key: dict(value) if isinstance(value, dict) else value for key, value in manifest.items()}
    for section, key in MANIFEST_PATHS:
        holder = copied if section is None else copied.get(section)
        if isinstance(holder, dict) and isinstance(holder.get(key), str):
            holder[key] = change(holder[key])
    return copied


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write ``folder/manifest.json`` atomically, its paths relative to ``folder``."""
    base = folder.resolve()
    portable = _map_paths(manifest, lambda path: os.path.relpath(Path(path).resolve(), base))
    with replacing(folder / "manifest.json") as temporary:
        temporary.write_text(json.dumps(portable, indent=2))


def read_manifest(folder: Path) -> dict[str, Any]:
    """An index folder's manifest, its paths made absolute; a clear error if the folder is not one."""
    path = folder / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not an index folder (no manifest.json); run 'embed' first")
    base = folder.resolve()
    return _map_paths(json.loads(path.read_text()), lambda relative: str((base / relative).resolve()))
