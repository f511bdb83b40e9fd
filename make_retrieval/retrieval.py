"""Retrievers: something that maps query strings to ranked product ids over a whole catalog.

``MAKERetriever`` (query encoder + vector store), ``LexicalIndex`` (BM25, index/lexical.py) and
``HybridRetriever`` (the two fused, index/fusion.py) share one interface so that evaluation, the
demo and the benchmark treat them alike; ``open_index`` gives the dense retriever of an index folder.
``Index`` is the same opened folder as a user holds it (public: ``make_retrieval.Index``), and what
the ``search`` command and the service search through, in any of the three modes: hits with their
products' fields, modality weights and the channels that found them. Nothing here imports torch
unless the torch query encoder is asked for, so that ``search`` on an exported index starts fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from make_retrieval.config import QUERY_ENCODERS
from make_retrieval.errors import CheckpointError, ConfigError
from make_retrieval.files import same_file
from make_retrieval.index.folder import open_store
from make_retrieval.index.fusion import Candidates, Fusion, fuse
from make_retrieval.index.lexical import LexicalIndex
from make_retrieval.index.store import Hit, VectorStore
from make_retrieval.query_encoder import ONNX_FILE, ONNX_FOLDER, OnnxQueryEncoder, QueryEncoder, TorchQueryEncoder

if TYPE_CHECKING:
    from make_retrieval.index.store import StoredProduct
    from make_retrieval.model.make import MAKEModel

#: What ``Index.search`` searches with.
MODES = ("dense", "lexical", "hybrid")
#: Queries whose hybrid candidates' vectors are looked up together.
LOOKUP_QUERIES = 32


class Retriever(Protocol):
    """Anything that ranks catalog products for query strings."""

    name: str

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]: ...


class DenseChannel(Protocol):
    """A model's side of hybrid search: encode queries, search by vector, look up product vectors."""

    def encode(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Query vectors (Q, D) and modality weights a(q) (Q, M)."""
        ...

    def search_vectors(self, vectors: np.ndarray, k: int, category: str | None = None) -> list[list[Hit]]: ...

    def vectors_of(self, product_ids: Sequence[str]) -> np.ndarray: ...


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

    def encode(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Query vectors and a(q) (``DenseChannel``)."""
        return self.encoder.encode(queries)

    def search_vectors(self, vectors: np.ndarray, k: int, category: str | None = None) -> list[list[Hit]]:
        """Top-k hits of query vectors (``DenseChannel``)."""
        return self.store.search(vectors, k, category)

    def vectors_of(self, product_ids: Sequence[str]) -> np.ndarray:
        """Stored product vectors (``DenseChannel``)."""
        return self.store.vectors_of(product_ids)


class HybridRetriever:
    """The dense and lexical channels fused (index/fusion.py): each proposes ``max(k, depth)``
    products and every product proposed is scored by both."""

    name = "MAKE+BM25"

    def __init__(self, dense: DenseChannel, lexical: LexicalIndex, fusion: Fusion):
        self.dense, self.lexical, self.fusion = dense, lexical, fusion

    def candidates(
        self, queries: Sequence[str], k: int, category: str | None = None
    ) -> tuple[list[Candidates], np.ndarray]:
        """Each query's candidates with both channels' exact scores, and the queries' a(q)."""
        vectors, query_weights = self.dense.encode(queries)
        depth = max(k, self.fusion.depth)
        found = []
        for query, hits in zip(queries, self.dense.search_vectors(vectors, depth, category), strict=True):
            scores = self.lexical.scores(query)
            candidates = Candidates.union(hits, self.lexical.top(scores, depth, category))
            candidates.lexical = self.lexical.score_ids(scores, candidates.product_ids)
            found.append(candidates)
        # one look-up of the candidates' vectors per LOOKUP_QUERIES queries: one round trip to Milvus
        # for many queries, while the vectors held stay bounded (2 x depth x LOOKUP_QUERIES rows)
        for start in range(0, len(found), LOOKUP_QUERIES):
            chunk = found[start : start + LOOKUP_QUERIES]
            ids = list(dict.fromkeys(pid for c in chunk for pid in c.product_ids))
            rows = {pid: r for r, pid in enumerate(ids)}
            stored = self.dense.vectors_of(ids)
            for vector, c in zip(vectors[start : start + LOOKUP_QUERIES], chunk, strict=True):
                if c.product_ids:
                    c.dense = stored[[rows[pid] for pid in c.product_ids]] @ vector
        return found, query_weights

    def search(self, queries: Sequence[str], k: int, category: str | None = None) -> list[list[Hit]]:
        """Top-k fused hits per query."""
        return self.search_with_weights(queries, k, category)[0]

    def search_with_weights(
        self, queries: Sequence[str], k: int, category: str | None = None
    ) -> tuple[list[list[Hit]], np.ndarray]:
        """Top-k fused hits per query and each query's a(q)."""
        found, query_weights = self.candidates(queries, k, category)
        return [fuse(c, self.fusion, k) for c in found], query_weights


@dataclass
class SearchHit:
    """One product found for a query: its stored fields, its Modal Adaptation weights b(p) (how much
    its title, image and fused parts count), its score, and the channels that found it."""

    product_id: str
    title: str
    #: The inner product with the query (dense), the BM25 score (lexical) or the fused score (hybrid).
    score: float
    weights: dict[str, float]
    category: str | None
    #: Image path relative to the catalog folder; None for a text-only product.
    image: str | None
    metadata: dict[str, Any]
    #: The channels that found the product ("dense", "lexical") and its rank in each (1 = first).
    channels: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, product: StoredProduct, hit: Hit, channels: dict[str, int] | None = None) -> SearchHit:
        """The hit of a stored product; ``channels`` where ``hit`` has none (a single channel's)."""
        p = product
        found = hit.channels or channels or {}
        return cls(p.product_id, p.title, hit.score, p.weights, p.category, p.image, p.metadata, found)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the CLI prints it)."""
        return asdict(self)


@dataclass
class QueryResult:
    """The hits of one query, best first, and the query's modality weights a(q) (empty for a
    lexical search, which runs no model)."""

    query: str
    weights: dict[str, float]
    hits: list[SearchHit]


class Index:
    """An index folder (FAISS or Milvus) opened for search with its query encoder, and its lexical
    channel when ``embed`` built one.

    ``Index.open(path)`` picks the ONNX query encoder exported into the folder when it was exported
    from the index's checkpoint, else the PyTorch model (``model``: a run or saved model folder,
    default the one the index was built from). ``fusion`` is how hybrid search fuses the channels:
    the index's own setting (chosen on validation by ``embed``) unless replaced."""

    def __init__(self, retriever: MAKERetriever, lexical: LexicalIndex | None = None, fusion: Fusion | None = None):
        self.retriever, self.lexical = retriever, lexical
        self.fusion = fusion or Fusion.from_dict(retriever.store.manifest.get("hybrid", {}))

    @classmethod
    def open(cls, path: Path | str, model: Path | str | None = None, encoder: str = "auto") -> Index:
        """Open index folder ``path``; ``encoder``: auto, onnx or torch."""
        path = Path(path)
        return cls(open_index(path, None if model is None else Path(model), encoder), LexicalIndex.load(path))

    @property
    def store(self) -> VectorStore:
        return self.retriever.store

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.retriever.store.modalities

    def __len__(self) -> int:
        return len(self.retriever.store)

    def search(
        self, queries: Sequence[str], k: int = 10, category: str | None = None, mode: str = "dense"
    ) -> list[QueryResult]:
        """The top ``k`` products of each query (only ``category``'s if given), one result per query.
        ``mode``: ``dense`` (MAKE), ``lexical`` (BM25) or ``hybrid`` (both fused)."""
        if isinstance(queries, str):
            raise TypeError("search takes a list of queries: index.search([query])")
        found, query_weights = self._hits(list(queries), k, category, mode)
        results = []
        for query, hits, a_q in zip(queries, found, query_weights, strict=True):
            products = self.store.get([hit.product_id for hit in hits])
            ranks = [{mode: rank} for rank in range(1, len(hits) + 1)]
            shown = [SearchHit.of(p, h, r) for h, p, r in zip(hits, products, ranks, strict=True) if p is not None]
            weights = dict(zip(self.modalities, a_q, strict=True)) if a_q else {}
            results.append(QueryResult(query, weights, shown))
        return results

    def _hits(
        self, queries: list[str], k: int, category: str | None, mode: str
    ) -> tuple[list[list[Hit]], list[list[float]]]:
        """Each query's hits (a product deleted since is skipped by ``search``) and a(q) ([] for lexical)."""
        if mode not in MODES:
            raise ConfigError(f"unknown search mode '{mode}'; choose one of {MODES}")
        if mode == "dense":
            hits, weights = self.retriever.search_with_weights(queries, k, category)
            return hits, weights.tolist()
        if mode == "lexical":
            return self.lexical_channel(mode).search(queries, k, category), [[] for _ in queries]
        hits, weights = self.hybrid().search_with_weights(queries, k, category)
        return hits, weights.tolist()

    def hybrid(self) -> HybridRetriever:
        """The folder's dense and lexical channels fused as its manifest says (a ``Retriever``)."""
        return HybridRetriever(self.retriever, self.lexical_channel("hybrid"), self.fusion)

    def lexical_channel(self, mode: str = "lexical") -> LexicalIndex:
        """The lexical channel, or a clear error naming the ``mode`` that needs it."""
        if self.lexical is None:
            raise ConfigError(f"this index has no lexical channel for {mode} search; build it again with 'embed'")
        return self.lexical


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
