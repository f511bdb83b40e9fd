"""Retrievers: something that maps query strings to ranked product ids over a whole catalog.

``MAKERetriever`` (query encoder + vector store) and ``BM25Retriever`` (bm25s over titles) share one
interface so that evaluation, the demo and later baselines treat them alike; ``open_index`` gives
the retriever of an index folder. ``Index`` is the same opened folder as a user holds it (public:
``make_retrieval.Index``), and what the ``search`` command and the service search through: hits
with their products' fields and modality weights. Nothing here imports torch unless the torch query
encoder is asked for, so that ``search`` on an exported index starts fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from make_retrieval.config import QUERY_ENCODERS
from make_retrieval.data.keywords import tokenize
from make_retrieval.errors import CheckpointError, ConfigError
from make_retrieval.files import same_file
from make_retrieval.index.folder import open_store
from make_retrieval.index.store import Hit, StoredProduct, VectorStore
from make_retrieval.query_encoder import ONNX_FILE, ONNX_FOLDER, OnnxQueryEncoder, QueryEncoder, TorchQueryEncoder

if TYPE_CHECKING:
    from make_retrieval.data.catalog import Catalog
    from make_retrieval.model.make import MAKEModel


class Retriever(Protocol):
    """Anything that ranks catalog products for query strings."""

    name: str

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]: ...


class MAKERetriever:
    """Encodes queries with the trained query tower and searches a product store."""

    name = "MAKE"

    def __init__(self, encoder: QueryEncoder, store: VectorStore):
        self.encoder, self.store = encoder, store

    def search(self, queries: Sequence[str], k: int, category: str | None = None) -> list[list[Hit]]:
        """Top-k hits per query (only ``category``'s products if given)."""
        return self.search_with_weights(queries, k, category)[0]

    def search_with_weights(
        self, queries: Sequence[str], k: int, category: str | None = None
    ) -> tuple[list[list[Hit]], np.ndarray]:
        """Top-k hits per query and each query's modality weights a(q), shape (Q, M)."""
        vectors, query_weights = self.encoder.encode(queries)
        return self.store.search(vectors, k, category), query_weights

    def search_products(
        self, queries: Sequence[str], k: int, category: str | None = None
    ) -> tuple[list[list[tuple[StoredProduct, float]]], np.ndarray]:
        """Top-k (stored product, score) pairs per query and each query's a(q): what the CLI and the
        service show. A product deleted between search and fetch is skipped."""
        found, query_weights = self.search_with_weights(queries, k, category)
        results = []
        for hits in found:
            products = self.store.get([hit.product_id for hit in hits])
            results.append([(p, hit.score) for hit, p in zip(hits, products, strict=True) if p is not None])
        return results, query_weights


@dataclass
class SearchHit:
    """One product found for a query: its stored fields, its Modal Adaptation weights b(p) (how much
    its title, image and fused parts count) and its score (the inner product with the query)."""

    product_id: str
    title: str
    score: float
    weights: dict[str, float]
    category: str | None
    #: Image path relative to the catalog folder; None for a text-only product.
    image: str | None
    metadata: dict[str, Any]

    @classmethod
    def of(cls, product: StoredProduct, score: float) -> SearchHit:
        """The hit of a stored product scored ``score``."""
        p = product
        return cls(p.product_id, p.title, score, p.weights, p.category, p.image, p.metadata)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the CLI prints it)."""
        return asdict(self)


@dataclass
class QueryResult:
    """The hits of one query, best first, and the query's modality weights a(q)."""

    query: str
    weights: dict[str, float]
    hits: list[SearchHit]


class Index:
    """An index folder (FAISS or Milvus) opened for search with its query encoder.

    ``Index.open(path)`` picks the ONNX query encoder exported into the folder when it was exported
    from the index's checkpoint, else the PyTorch model (``model``: a run or saved model folder,
    default the one the index was built from)."""

    def __init__(self, retriever: MAKERetriever):
        self.retriever = retriever

    @classmethod
    def open(cls, path: Path | str, model: Path | str | None = None, encoder: str = "auto") -> Index:
        """Open index folder ``path``; ``encoder``: auto, onnx or torch."""
        return cls(open_index(Path(path), None if model is None else Path(model), encoder))

    @property
    def store(self) -> VectorStore:
        return self.retriever.store

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.retriever.store.modalities

    def __len__(self) -> int:
        return len(self.retriever.store)

    def search(self, queries: Sequence[str], k: int = 10, category: str | None = None) -> list[QueryResult]:
        """The top ``k`` products of each query (only ``category``'s if given), one result per query."""
        if isinstance(queries, str):
            raise TypeError("search takes a list of queries: index.search([query])")
        found, query_weights = self.retriever.search_products(queries, k, category)
        return [
            QueryResult(query, dict(zip(self.modalities, a_q, strict=True)), [SearchHit.of(p, s) for p, s in pairs])
            for query, pairs, a_q in zip(queries, found, query_weights.tolist(), strict=True)
        ]


class BM25Retriever:
    """Lexical baseline over titles, with the same tokenizer as Keyword Enhancement."""

    name = "BM25"

    def __init__(self, catalog: Catalog):
        import bm25s  # imported here: searching an index needs no BM25 and should start fast

        self.product_ids = catalog.product_ids
        self.bm25 = bm25s.BM25()
        self.bm25.index([tokenize(t) for t in catalog.titles], show_progress=False)
        self.vocabulary = set(self.bm25.vocab_dict)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        k = min(k, len(self.product_ids))
        results: list[list[Hit]] = []
        for query in queries:
            terms = [t for t in tokenize(query) if t in self.vocabulary]
            if not terms:  # nothing to match: BM25 returns nothing rather than arbitrary products
                results.append([])
                continue
            positions, scores = self.bm25.retrieve([terms], k=k, show_progress=False)
            results.append(
                [Hit(self.product_ids[p], float(s)) for p, s in zip(positions[0], scores[0], strict=True) if s > 0]
            )
        return results


def rank_scores(hits: list[Hit]) -> dict[str, float]:
    """ranx wants {product_id: score}; equal scores are broken by rank so the order survives."""
    count = len(hits)
    return {h.product_id: float(count - r) for r, h in enumerate(hits)}


def open_index(index_dir: Path, run_dir: Path | None = None, encoder: str = "torch") -> MAKERetriever:
    """Open an index folder (any backend) with a query encoder for the model that built it:
    ``onnx`` the graph exported into the folder, ``torch`` the run's checkpoint, ``auto`` the
    former when it was exported from the index's checkpoint, else the latter."""
    if encoder not in QUERY_ENCODERS:
        raise ConfigError(f"unknown encoder '{encoder}'; choose one of {QUERY_ENCODERS}")
    store = open_store(index_dir)
    model_info = store.manifest["model"]
    onnx_folder = index_dir / ONNX_FOLDER
    if encoder != "torch" and (onnx_folder / ONNX_FILE).is_file():
        onnx = OnnxQueryEncoder(onnx_folder)
        if onnx.info["checkpoint_sha256"] != model_info["checkpoint_sha256"]:
            raise CheckpointError(f"{onnx_folder} was exported from another checkpoint; run 'export-onnx' again")
        return MAKERetriever(onnx, store)
    if encoder == "onnx":
        raise FileNotFoundError(f"{onnx_folder / ONNX_FILE} not found; run 'make-retrieval export-onnx' first")
    model = index_model(index_dir, store.manifest, run_dir)
    return MAKERetriever(TorchQueryEncoder(model), store)


def index_model(index_dir: Path, manifest: dict[str, Any], run_dir: Path | None) -> MAKEModel:
    """The model of the run that built the index, refused if its checkpoint is another one (a
    checkpoint as large as 200 MB is not hashed again while its stamp is the one recorded)."""
    from make_retrieval.model.checkpoint import load_model  # torch: only for the torch encoder

    model, _, checkpoint = load_model(run_dir or Path(manifest["model"]["run"]))
    info = manifest["model"]
    if not same_file(checkpoint, info["checkpoint_sha256"], info.get("checkpoint_stamp")):
        raise CheckpointError(f"{index_dir} was built by another checkpoint than {checkpoint}; rebuild it with 'embed'")
    return model
