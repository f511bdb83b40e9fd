"""The steps behind the CLI commands, as functions: build an index from a run, open it for search,
evaluate a run or a baseline, and the demo that chains train -> embed -> evaluate."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from make_retrieval.config import SHARD_SIZE, Config, IndexConfig
from make_retrieval.data.pairs import DataDir, load_data_dir
from make_retrieval.distributed import Distributed
from make_retrieval.embed import embed_catalog, embed_products, stored_fields, stored_products
from make_retrieval.errors import ConfigError
from make_retrieval.evaluate import EvaluationResult, ExactRetriever, evaluate_retriever
from make_retrieval.files import file_sha256, file_stamp
from make_retrieval.hybrid import add_lexical_channel, check_fusion, evaluate_hybrid, rebuild_lexical_channel
from make_retrieval.index.faiss_index import Part, ProductIndex
from make_retrieval.index.folder import open_store
from make_retrieval.index.fusion import Fusion
from make_retrieval.index.lexical import FOLDER as LEXICAL_FOLDER
from make_retrieval.index.lexical import LexicalIndex
from make_retrieval.index.milvus_index import MilvusIndex
from make_retrieval.index.store import VectorStore, read_manifest
from make_retrieval.model.checkpoint import load_model
from make_retrieval.model.make import MAKEModel
from make_retrieval.onnx_export import export_onnx
from make_retrieval.query_encoder import ONNX_FOLDER, TorchQueryEncoder
from make_retrieval.retrieval import Index, MAKERetriever, Retriever, index_model
from make_retrieval.train.loop import train

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_CONFIG = PACKAGE_DIR / "configs" / "demo.yaml"
#: The vendored catalog lives in the repository (data/demo), next to the package.
DEMO_DATA = PACKAGE_DIR.parent / "data" / "demo"
BASELINES = ("bm25",)
#: Products per copy step of ``to_milvus``.
MILVUS_COPY_BATCH = 10_000


@dataclass
class _Embedding:
    """What embedding a catalog with a run's model needs, loaded once: the model on this rank's
    device, the index settings, the catalog (and on rank 0 the valid split the fusion is chosen on),
    and the model's description for the index manifest."""

    model: MAKEModel
    settings: IndexConfig
    data: DataDir
    manifest: dict[str, Any]
    #: The checkpoint's and config's digests: a shard file made by another model is not reused.
    model_key: str

    @classmethod
    def load(
        cls,
        run_dir: Path,
        data_dir: Path,
        context: Distributed,
        skip_bad_rows: bool,
        text_only: Path | None,
        index: IndexConfig | None,
    ) -> _Embedding:
        """Load model and catalog (``index``: the settings, default the run config's); rank 0 reports
        the data (and lists text-only products in ``text_only``) and refuses a fusion it cannot set."""
        model, config, checkpoint = load_model(run_dir)
        model.to(context.device)
        settings = index or config.index
        chosen = settings.lexical and context.is_main  # rank 0 builds the lexical channel
        data = load_data_dir(data_dir, splits=("valid",) if chosen else (), skip_bad_rows=skip_bad_rows)
        if chosen:
            check_fusion(settings, "valid" in data.judgements)
        if context.is_main:
            data.report.announce()
            if text_only is not None:
                text_only.parent.mkdir(parents=True, exist_ok=True)
                data.report.write_text_only(text_only)
        checkpoint_sha256 = file_sha256(checkpoint)
        info = {
            "run": str(Path(run_dir).resolve()),
            "checkpoint": checkpoint.name,
            "checkpoint_sha256": checkpoint_sha256,
            "checkpoint_stamp": file_stamp(checkpoint),
            "data": str(Path(data_dir).resolve()),
        }
        root = data.catalog.root
        text_only_count = len(data.report.text_only_products)
        manifest = {"model": info, "data": str(root) if root is not None else None, "text_only": text_only_count}
        model_key = f"{checkpoint_sha256}:{file_sha256(Path(run_dir) / 'config.yaml')}"
        return cls(model, settings, data, manifest, model_key)

    def add_lexical(self, index_dir: Path, store: VectorStore) -> dict[str, Any]:
        """Build the folder's lexical channel and choose its fusion on the valid split (if the data
        has one) searching ``store`` as served; the folder's manifest, as written."""
        dense = MAKERetriever(TorchQueryEncoder(self.model), store)
        valid = self.data.judgements.get("valid")
        return add_lexical_channel(index_dir, self.data.catalog, dense, self.settings, valid)


def build_index(
    run_dir: Path,
    data_dir: Path,
    index: IndexConfig | None = None,
    batch_size: int = 128,
    skip_bad_rows: bool = False,
) -> ProductIndex:
    """Embed every product of ``data_dir`` with the run's model in one pass and index the vectors in
    memory (``index``: the structure and its knobs, default the run config's ``index`` section): for
    catalogs that fit in memory twice over. It builds no lexical channel; ``write_index`` (the
    sharded path, which ``embed``, ``index_folder`` and the demo take) does."""
    run = _Embedding.load(run_dir, data_dir, Distributed(), skip_bad_rows, None, index)
    model, catalog = run.model, run.data.catalog
    vectors, weights = embed_products(model, catalog, batch_size=batch_size)
    products = stored_products(catalog, weights, model.modalities)
    return ProductIndex.build(products, vectors, model.modalities, run.settings, run.manifest)


def write_index(
    run_dir: Path,
    data_dir: Path,
    out: Path,
    shards: EmbedShards,
    index: IndexConfig | None = None,
    batch_size: int = 128,
    skip_bad_rows: bool = False,
    text_only_report: Path | None = None,
) -> dict[str, Any] | None:
    """Embed the catalog shard by shard over the ranks of a torchrun job (resumable) and write the
    FAISS folder ``out`` from the shard files one at a time (``ProductIndex.write``): while writing,
    rank 0 holds the FAISS structure and one shard, never the merged vectors or the whole product
    table. Then rank 0 builds the lexical channel and opens the folder as ``serve`` would (FAISS
    structure and product table) to choose the hybrid fusion on the valid split. Rank 0 gets the
    manifest, the other ranks None. ``text_only_report``: a CSV naming every product indexed by its
    title alone and why (no image given, missing or corrupt)."""
    run = _Embedding.load(run_dir, data_dir, shards.context, skip_bad_rows, text_only_report, index)
    model, catalog = run.model, run.data.catalog
    key, size, workers = run.model_key, shards.size, shards.workers
    files = embed_catalog(model, catalog, shards.folder, key, shards.context, size, batch_size, workers)
    if files is None:
        return None

    def parts() -> Iterator[Part]:
        for shard in files:
            vectors, weights = shard.load()
            yield stored_products(catalog, weights, model.modalities, shard.positions), vectors

    ProductIndex.write(out, parts, len(catalog), model.dim, model.modalities, run.settings, run.manifest)
    return run.add_lexical(out, ProductIndex.load(out))


def ingest_milvus(
    run_dir: Path,
    data_dir: Path,
    target: MilvusTarget,
    shards: EmbedShards,
    index: IndexConfig | None = None,
    batch_size: int = 128,
    skip_bad_rows: bool = False,
    text_only_report: Path | None = None,
) -> MilvusIndex | None:
    """Embed the catalog shard by shard over the ranks straight into a Milvus collection: rank 0
    creates it, every rank upserts the rows of its own shards as it finishes each (no rank gathers
    the vectors, so rank 0's memory does not grow with the catalog), and rank 0 flushes and writes
    the index folder ``target.out``. Resumable as ``embed`` is: a shard file kept from a killed run
    is upserted again (an upsert of the same id replaces it) without being re-embedded. Rank 0 gets
    the store, the other ranks None."""
    context = shards.context
    run = _Embedding.load(run_dir, data_dir, context, skip_bad_rows, text_only_report, index)
    model, catalog = run.model, run.data.catalog
    settings = run.settings
    manifest = {**run.manifest, "dimension": model.dim, "modalities": list(model.modalities), "count": len(catalog)}
    if context.is_main:
        MilvusIndex.create(target.uri, target.collection, manifest, settings, target.replace)
    context.barrier()
    store = MilvusIndex.connect(target.uri, target.collection, manifest, settings)

    def upsert(positions: range, vectors: np.ndarray, weights: np.ndarray) -> None:
        store.add(stored_products(catalog, weights, model.modalities, positions), vectors)

    key, size, workers = run.model_key, shards.size, shards.workers
    embed_catalog(model, catalog, shards.folder, key, context, size, batch_size, workers, sink=upsert)
    if not context.is_main:
        return None
    store.manifest["categories"] = sorted({c for c in catalog.categories if c is not None})
    store.save(target.out)
    store.manifest = run.add_lexical(target.out, store)
    return store


@dataclass
class MilvusTarget:
    """Where ``ingest_milvus`` writes: a Milvus URI (a server, or a Milvus Lite file for one process)
    and collection, replacing an existing one only if asked, and the index folder to write."""

    uri: str
    collection: str
    out: Path
    replace: bool = False

    def __post_init__(self) -> None:
        self.uri = absolute_uri(self.uri)


def absolute_uri(uri: str) -> str:
    """A Milvus URI as the index folder keeps it: a Milvus Lite file path made absolute."""
    return uri if "://" in uri else str(Path(uri).resolve())


@dataclass
class EmbedShards:
    """How ``write_index`` and ``ingest_milvus`` shard the catalog: shard files in ``folder`` of ``size`` products,
    images decoded in ``workers`` processes, ranks from ``context``."""

    folder: Path
    context: Distributed
    size: int = SHARD_SIZE
    workers: int = 0


def export_query_encoder(index_dir: Path, run_dir: Path | None = None) -> Path:
    """Export the index's query tower to ONNX inside the index folder (used by ``serve``)."""
    manifest = read_manifest(index_dir)
    model = index_model(index_dir, manifest, run_dir)
    return export_onnx(model, index_dir / ONNX_FOLDER, manifest["model"]["checkpoint_sha256"])


@dataclass
class SyncReport:
    """What ``sync_index`` changed."""

    added: int
    updated: int
    deleted: int
    unchanged: int
    #: Whether the lexical channel was rebuilt (it is whenever a product changed and it exists).
    lexical: bool = False


def sync_index(index_dir: Path, data_dir: Path, run_dir: Path | None = None, skip_bad_rows: bool = False) -> SyncReport:
    """Make the index match the catalog in ``data_dir`` without a rebuild: embed and add new products,
    re-embed products whose title, image path, category or metadata changed, delete products no
    longer listed."""
    store = open_store(index_dir)
    data = load_data_dir(data_dir, splits=(), skip_bad_rows=skip_bad_rows)
    data.report.announce()
    catalog = data.catalog
    if str(catalog.root) != store.manifest.get("data"):
        raise ConfigError(
            f"{index_dir} serves images from {store.manifest.get('data')}; sync it from that folder, not {data_dir}"
        )
    stored = dict(zip(catalog.product_ids, store.get(catalog.product_ids), strict=True))
    changed = [
        i
        for i, pid in enumerate(catalog.product_ids)
        if (old := stored[pid]) is None or old.fields() != stored_fields(catalog, i)
    ]
    added = sum(stored[catalog.product_ids[i]] is None for i in changed)
    gone = set(store.ids()) - set(catalog.product_ids)
    if changed:
        model = index_model(index_dir, store.manifest, run_dir)
        vectors, weights = embed_products(model, catalog, positions=changed)
        store.add(stored_products(catalog, weights, model.modalities, changed), vectors)
    deleted = store.delete(sorted(gone))
    store.save(index_dir)
    lexical = rebuild_lexical_channel(index_dir, catalog, bool(changed or deleted))
    return SyncReport(added, len(changed) - added, deleted, len(catalog) - len(changed), lexical)


def to_milvus(index_dir: Path, uri: str, collection: str, out: Path, replace: bool = False) -> MilvusIndex:
    """Copy a FAISS index folder's products and vectors into a Milvus collection (Milvus Lite when
    ``uri`` is a file path) and write ``out``, an index folder that ``serve`` and ``sync`` open."""
    source = ProductIndex.load(index_dir)
    uri = absolute_uri(uri)
    store = MilvusIndex.create(uri, collection, dict(source.manifest), source.config, replace)
    ids = source.ids()
    for start in range(0, len(ids), MILVUS_COPY_BATCH):
        chunk = ids[start : start + MILVUS_COPY_BATCH]
        products = [p for p in source.get(chunk) if p is not None]
        store.add(products, source.vectors[[source.rows[pid] for pid in chunk]])
    store.save(out)
    for folder in (ONNX_FOLDER, LEXICAL_FOLDER):  # the lexical channel stays in-process beside Milvus
        shutil.rmtree(out / folder, ignore_errors=True)  # nothing left of an earlier copy
        if (index_dir / folder).is_dir():
            shutil.copytree(index_dir / folder, out / folder)
    return store


def evaluate_on(
    data_dir: Path,
    split: str,
    run: Path | None = None,
    baseline: str | None = None,
    skip_bad_rows: bool = False,
    hybrid: bool = False,
) -> EvaluationResult:
    """Evaluate a trained run (exact search over its embeddings of the catalog), the run fused with
    BM25 (``hybrid``: fused as ``embed`` would, chosen on the valid split), or a baseline."""
    if baseline is not None and baseline not in BASELINES:
        raise ConfigError(f"unknown baseline '{baseline}'; choose one of {BASELINES}")
    if hybrid and split == "valid":
        raise ConfigError("--hybrid chooses its fusion on the valid split; evaluate it on test")
    # BM25 reads titles only, so it need not decode every image first
    splits = (split, "valid") if hybrid else (split,)
    data = load_data_dir(data_dir, splits=splits, skip_bad_rows=skip_bad_rows, check_images=baseline is None)
    data.report.announce()
    if split not in data.judgements:
        raise FileNotFoundError(f"no {split}.parquet/.jsonl/.csv in {data_dir}")
    if baseline is not None:
        return evaluate_retriever(LexicalIndex.from_catalog(data.catalog), data.judgements[split], data.catalog, split)
    assert run is not None
    model, config, _ = load_model(run)
    if hybrid:
        return evaluate_hybrid(model, data, split, config.index)[0]
    return evaluate_retriever(ExactRetriever(model, data.catalog), data.judgements[split], data.catalog, split)


def index_folder(
    run_dir: Path, data_dir: Path, out: Path, index: IndexConfig | None = None, skip_bad_rows: bool = False
) -> dict[str, Any]:
    """``embed`` on one process: write the index folder ``out`` (vectors, lexical channel, fusion
    chosen on valid) and remove its shard files; the manifest."""
    shards = EmbedShards(out / "shards", Distributed())
    manifest = write_index(run_dir, data_dir, out, shards, index, skip_bad_rows=skip_bad_rows)
    assert manifest is not None  # one process is rank 0
    shutil.rmtree(shards.folder)
    return manifest


def run_demo(
    data_dir: Path | None,
    out: Path,
    config_path: Path | None,
    console: Console,
    show: Callable[[list[EvaluationResult]], None],
    skip_bad_rows: bool = False,
) -> list[EvaluationResult]:
    """Train on the demo catalog, build ``out/index``, compare MAKE with BM25 on test, save results."""
    data_dir = data_dir or DEMO_DATA
    if not data_dir.is_dir():
        raise FileNotFoundError(f"demo catalog not found at {data_dir}; pass --data DIR")
    started = time.time()
    config = Config.load(config_path or DEMO_CONFIG)
    console.rule("1/3 train")
    train(config, data_dir, out, skip_bad_rows=skip_bad_rows)
    console.rule("2/3 embed and index")
    manifest = index_folder(out, data_dir, out / "index", skip_bad_rows=skip_bad_rows)
    export_query_encoder(out / "index", out)
    fusion = Fusion.from_dict(manifest["hybrid"]).describe()
    console.print(f"indexed {manifest['count']} products, query encoder exported to ONNX -> {out / 'index'}")
    console.print(f"lexical channel beside it; hybrid search fuses {fusion}", highlight=False)
    console.rule("3/3 evaluate on the test split")
    data = load_data_dir(data_dir, splits=("test",), skip_bad_rows=skip_bad_rows)
    judged = data.judgements["test"]
    index = Index.open(out / "index", out, encoder="onnx")
    retrievers: list[Retriever] = [index.lexical_channel(), index.retriever, index.hybrid()]
    results = [evaluate_retriever(r, judged, data.catalog) for r in retrievers]
    (out / "results.json").write_text(json.dumps([r.to_dict() for r in results], indent=2))
    show(results)
    console.print(f"demo finished in {time.time() - started:.0f}s; results in {out / 'results.json'}")
    console.print("Next, try:")
    for command in (
        f"make-retrieval serve --index {out / 'index'}   # then open http://127.0.0.1:8000/",
        f'make-retrieval search --index {out / "index"} "black heels" -k 10 --mode hybrid',
        f"make-retrieval evaluate --run {out} --data {data_dir} --split test --json",
        f"make-retrieval evaluate --baseline bm25 --data {data_dir} --json",
    ):
        console.print(f"  {command}", soft_wrap=True, highlight=False)
    return results
