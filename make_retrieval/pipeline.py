"""The steps behind the CLI commands, as functions: build an index from a run, open it for search,
evaluate a run or a baseline, and the demo that chains train -> embed -> evaluate."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from make_retrieval.config import Config, ConfigError
from make_retrieval.data.pairs import load_data_dir
from make_retrieval.embed import SHARD_SIZE, embed_catalog, embed_products
from make_retrieval.evaluate import EvaluationResult, evaluate_retriever
from make_retrieval.files import file_sha256
from make_retrieval.index.faiss_index import IndexConfig, ProductIndex
from make_retrieval.retrieval import BM25Retriever, MAKERetriever, exact_retriever
from make_retrieval.train.checkpoint import CheckpointError, load_model
from make_retrieval.train.distributed import Distributed
from make_retrieval.train.loop import train

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_CONFIG = PACKAGE_DIR / "configs" / "demo.yaml"
BENCHMARK_CONFIG = PACKAGE_DIR / "configs" / "benchmark.yaml"
#: The vendored catalog lives in the repository (data/demo), next to the package.
DEMO_DATA = PACKAGE_DIR.parent / "data" / "demo"
BASELINES = ("bm25",)


def build_index(
    run_dir: Path,
    data_dir: Path,
    kind: str = "flat",
    batch_size: int = 128,
    skip_bad_rows: bool = False,
    shards: EmbedShards | None = None,
) -> ProductIndex | None:
    """Embed every product of ``data_dir`` with the run's model and index the vectors. With
    ``shards`` the catalog is embedded shard by shard over the ranks of a torchrun job (resumable);
    then only rank 0 gets the index, the other ranks None."""
    context = shards.context if shards else Distributed()
    model, _, checkpoint = load_model(run_dir)
    model.to(context.device)
    data = load_data_dir(data_dir, splits=(), skip_bad_rows=skip_bad_rows)
    if context.is_main:
        data.report.announce()
    checkpoint_sha256 = file_sha256(checkpoint)
    if shards is None:
        vectors, weights = embed_products(model, data.catalog, batch_size=batch_size)
    else:
        model_key = f"{checkpoint_sha256}:{file_sha256(Path(run_dir) / 'config.yaml')}"
        merged = embed_catalog(
            model, data.catalog, shards.folder, model_key, context, shards.size, batch_size, shards.workers
        )
        if merged is None:
            return None
        vectors, weights = merged
    info = {
        "run": str(Path(run_dir).resolve()),
        "checkpoint": checkpoint.name,
        "checkpoint_sha256": checkpoint_sha256,
        "data": str(Path(data_dir).resolve()),
    }
    return ProductIndex.build(data.catalog, vectors, weights, model.modalities, IndexConfig(kind=kind), info)


@dataclass
class EmbedShards:
    """How ``build_index`` shards the catalog: shard files in ``folder`` of ``size`` products,
    images decoded in ``workers`` processes, ranks from ``context``."""

    folder: Path
    context: Distributed
    size: int = SHARD_SIZE
    workers: int = 0


def open_index(index_dir: Path, run_dir: Path | None = None) -> MAKERetriever:
    """Load an index folder and the query tower of the run that built it."""
    index = ProductIndex.load(index_dir)
    model, _, checkpoint = load_model(run_dir or Path(index.manifest["model"]["run"]))
    if file_sha256(checkpoint) != index.manifest["model"]["checkpoint_sha256"]:
        raise CheckpointError(f"{index_dir} was built by another checkpoint than {checkpoint}; rebuild it with 'embed'")
    return MAKERetriever(model, index)


def evaluate_on(
    data_dir: Path,
    split: str,
    run: Path | None = None,
    baseline: str | None = None,
    skip_bad_rows: bool = False,
) -> EvaluationResult:
    """Evaluate a trained run (exact search over its embeddings of the catalog) or a baseline."""
    if baseline is not None and baseline not in BASELINES:
        raise ConfigError(f"unknown baseline '{baseline}'; choose one of {BASELINES}")
    # BM25 reads titles only, so it need not decode every image first
    data = load_data_dir(data_dir, splits=(split,), skip_bad_rows=skip_bad_rows, check_images=baseline is None)
    data.report.announce()
    if split not in data.judgements:
        raise FileNotFoundError(f"no {split}.parquet/.jsonl/.csv in {data_dir}")
    if baseline is not None:
        retriever: BM25Retriever | MAKERetriever = BM25Retriever(data.catalog)
    else:
        assert run is not None
        retriever = exact_retriever(load_model(run)[0], data.catalog)
    return evaluate_retriever(retriever, data.judgements[split], data.catalog, split)


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
    index = build_index(out, data_dir, skip_bad_rows=skip_bad_rows)
    index.save(out / "index")
    console.print(f"indexed {index.manifest['count']} products -> {out / 'index'}")
    console.rule("3/3 evaluate on the test split")
    data = load_data_dir(data_dir, splits=("test",), skip_bad_rows=skip_bad_rows)
    judged = data.judgements["test"]
    results = [
        evaluate_retriever(BM25Retriever(data.catalog), judged, data.catalog),
        evaluate_retriever(open_index(out / "index", out), judged, data.catalog),
    ]
    (out / "results.json").write_text(json.dumps([r.to_dict() for r in results], indent=2))
    show(results)
    console.print(f"demo finished in {time.time() - started:.0f}s; results in {out / 'results.json'}")
    console.print("Next, try:")
    for command in (
        f'make-retrieval search --index {out / "index"} "black heels" -k 10',
        f"make-retrieval evaluate --run {out} --data {data_dir} --split test --json",
        f"make-retrieval evaluate --baseline bm25 --data {data_dir} --json",
    ):
        console.print(f"  {command}", soft_wrap=True, highlight=False)
    return results
