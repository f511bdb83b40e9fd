"""``make-retrieval``: train, embed, search, serve, evaluate, demo.

Data errors are printed as one line naming file, row and field (exit code 2), not a traceback.
This module imports only light modules at the top (config, errors, the variant table), so that
``--help`` and argument errors answer at once; each command imports what it runs.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec

import typer
from rich.console import Console
from rich.markup import escape

from make_retrieval.config import INDEX_KINDS, QUERY_ENCODERS, SHARD_SIZE, Config
from make_retrieval.display import hits_table, metrics_table, weights_table
from make_retrieval.errors import USER_ERRORS, ConfigError, IndexFileError
from make_retrieval.model.baselines import VARIANTS

if TYPE_CHECKING:
    from make_retrieval.evaluate import EvaluationResult

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.callback()
def _offline() -> None:
    """Nothing is ever downloaded at run time: every model comes from a local folder or a package.
    Set before a command imports transformers / huggingface_hub, which read it once; a program that
    imports the library sets its own environment."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# Tables stay readable when output is piped (rich would assume 80 columns).
console = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
P = ParamSpec("P")
IndexKind = Enum("IndexKind", {kind: kind for kind in INDEX_KINDS}, type=str)  # type: ignore[misc]
Encoder = Enum("Encoder", {name: name for name in QUERY_ENCODERS}, type=str)  # type: ignore[misc]
Split = Enum("Split", {"valid": "valid", "test": "test"}, type=str)  # type: ignore[misc]

SkipBadRows = Annotated[
    bool, typer.Option("--skip-bad-rows", help="Skip rows that break the format (counted and reported).")
]


def _fail_on_data_errors(func: Callable[P, None]) -> Callable[P, None]:
    """Turn data, config and missing-file errors into a one-line message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            func(*args, **kwargs)
        except USER_ERRORS as error:
            err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from error

    return wrapper


def _needs(extra: str, *modules: str) -> None:
    """A clear error when a command's optional dependencies (an extra) are not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"this command needs {', '.join(missing)}: pip install 'make-retrieval[{extra}]'")


@app.command()
@_fail_on_data_errors
def train(
    data: Annotated[Path, typer.Option(help="Data directory (products, train, valid tables).")],
    out: Annotated[Path, typer.Option(help="Run directory to create.")],
    config: Annotated[Path | None, typer.Option(help="YAML config (defaults otherwise).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override train.epochs.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override train.seed.")] = None,
    model: Annotated[
        str | None,
        typer.Option(help=f"Variant: {', '.join(VARIANTS)}."),
    ] = None,
    skip_bad_rows: SkipBadRows = False,
    resume: Annotated[
        bool, typer.Option(help="Continue from the newest training state in --out (same config); fresh if none.")
    ] = False,
) -> None:
    """Pre-train the MAKE model (or a baseline variant) on click triples (query, title, image)."""
    from make_retrieval.model.baselines import with_variant
    from make_retrieval.train.loop import train as run_training

    cfg = Config.load(config)
    if model is not None:
        cfg = with_variant(cfg, model)
    if epochs is not None:
        cfg.train.epochs = epochs
    if max_steps is not None:
        cfg.train.max_steps = max_steps
    if seed is not None:
        cfg.train.seed = seed
    result = run_training(cfg, data, out, skip_bad_rows=skip_bad_rows, resume=resume)
    if not result.main:
        return
    best = "n/a" if result.best is None else f"{result.best:.4f}"
    summary = f"trained {result.steps} steps in {result.seconds:.0f}s; best valid {cfg.train.valid_metric} {best}"
    console.print(f"{summary}; run: {out}")


@app.command()
@_fail_on_data_errors
def embed(
    # --run-dir: under torchrun, whose own parser takes --run as an abbreviation of its --run-path
    run: Annotated[Path, typer.Option("--run", "--run-dir", help="Run directory made by 'train'.")],
    data: Annotated[Path, typer.Option(help="Data directory whose products are embedded.")],
    out: Annotated[Path, typer.Option(help="Index directory to write.")],
    config: Annotated[
        Path | None, typer.Option(help="YAML whose 'index' section sets the index (default: the run's config).")
    ] = None,
    index: Annotated[IndexKind | None, typer.Option(help="flat (exact), hnsw or ivfpq.")] = None,
    hnsw_m: Annotated[int | None, typer.Option(min=2, help="HNSW links per node (index.hnsw_m).")] = None,
    ef_construction: Annotated[int | None, typer.Option(min=1, help="HNSW build beam width.")] = None,
    ef_search: Annotated[int | None, typer.Option(min=1, help="HNSW search beam width.")] = None,
    ivf_lists: Annotated[int | None, typer.Option(min=1, help="IVF lists (default about 4 sqrt(N)).")] = None,
    nprobe: Annotated[int | None, typer.Option(min=1, help="IVF lists searched per query.")] = None,
    pq_m: Annotated[int | None, typer.Option(min=1, help="PQ sub-quantisers (must divide the dimension).")] = None,
    rerank: Annotated[int | None, typer.Option(min=0, help="IVF-PQ: re-score k x this candidates exactly.")] = None,
    milvus_uri: Annotated[
        str | None, typer.Option(help="Write straight into Milvus at this URI (a server: every rank upserts).")
    ] = None,
    collection: Annotated[str, typer.Option(help="Milvus collection (with --milvus-uri).")] = "products",
    replace: Annotated[bool, typer.Option(help="Drop an existing collection of that name first.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Products per forward pass.")] = 128,
    shard_size: Annotated[int, typer.Option(min=1, help="Products per shard (the unit a rerun skips).")] = SHARD_SIZE,
    workers: Annotated[int, typer.Option(min=0, help="Image-decoding processes per rank.")] = 0,
    skip_bad_rows: SkipBadRows = False,
) -> None:
    """Embed the catalog into an index folder (or, with --milvus-uri, a Milvus collection); index
    settings: the run config's ``index`` section, then --config, then these options. Under torchrun
    the ranks share the shards; a rerun after a crash embeds only the shards missing."""
    import shutil

    from make_retrieval.distributed import init_distributed
    from make_retrieval.pipeline import EmbedShards, MilvusTarget, ingest_milvus, write_index

    settings = Config.load(config or run / "config.yaml").index.overridden(
        kind=index.value if index is not None else None, hnsw_m=hnsw_m, hnsw_ef_construction=ef_construction,
        hnsw_ef_search=ef_search, ivf_lists=ivf_lists, ivf_nprobe=nprobe, pq_m=pq_m, ivf_rerank=rerank,
    )
    shards = EmbedShards(out / "shards", init_distributed(), shard_size, workers)
    text_only = out / "text_only.csv"
    if milvus_uri is not None:
        target = MilvusTarget(milvus_uri, collection, out, replace)
        store = ingest_milvus(run, data, target, shards, settings, batch_size, skip_bad_rows, text_only)
        m = None if store is None else store.manifest
    else:
        m = write_index(run, data, out, shards, settings, batch_size, skip_bad_rows, text_only)
    if m is None:  # not rank 0: its shards are written, rank 0 finishes the index
        return
    shutil.rmtree(shards.folder)  # in embeddings.npy or the collection now
    console.print(f"indexed {m['count']} products, dimension {m['dimension']}, {settings.kind} index -> {out}")
    console.print(f"{m['text_only']} product(s) indexed by their title alone; which and why: {text_only}")


@app.command()
@_fail_on_data_errors
def search(
    query: Annotated[str, typer.Argument(help="What a shopper types.")],
    index: Annotated[Path, typer.Option(help="Index directory made by 'embed' (or 'to-milvus').")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Results to show.")] = 10,
    category: Annotated[str | None, typer.Option(help="Only products of this category.")] = None,
    run: Annotated[Path | None, typer.Option(help="Run directory (default: the one in the manifest).")] = None,
    encoder: Annotated[Encoder, typer.Option(help="Query encoder: onnx if exported (auto), onnx or torch.")] = (
        Encoder.auto
    ),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout, with metadata.")] = False,
) -> None:
    """Search the index; prints id, title, score and the product's modality weights."""
    from make_retrieval.retrieval import Index

    result = Index.open(index, run, encoder.value).search([query], k, category)[0]
    results = [hit.to_dict() for hit in result.hits]
    if as_json:
        print(json.dumps({"query": query, "query_weights": result.weights, "results": results}, ensure_ascii=False))
        return
    console.print(hits_table(query, result.weights, results))


@app.command()
@_fail_on_data_errors
def explain(
    index: Annotated[Path, typer.Option(help="Index directory made by 'embed'.")],
    product: Annotated[str | None, typer.Option(help="A product id; without it, the per-category table.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Show Modal Adaptation weights: one product's, or the mean per category (FAISS folders)."""
    from make_retrieval.index.faiss_index import ProductIndex
    from make_retrieval.index.folder import open_store

    store = open_store(index)
    if product is not None:
        found = store.get([product])[0]
        if found is None:
            raise IndexFileError(f"product '{product}' is not in {index}")
        if as_json:
            print(json.dumps(found.to_dict(), ensure_ascii=False))
            return
        console.print(f"{product}: {found.title} ({found.category})", highlight=False)
        for modality, weight in found.weights.items():
            console.print(f"  {modality:6s} {weight:.3f} {'#' * round(weight * 40)}", highlight=False)
        return
    if not isinstance(store, ProductIndex):
        raise IndexFileError(f"{index}: the per-category table reads a FAISS folder; pass the one 'embed' wrote")
    table_data = store.weights_by_category()
    if as_json:
        print(json.dumps(table_data))
        return
    console.print(weights_table(table_data, store.modalities))


@app.command("export-onnx")
@_fail_on_data_errors
def export_onnx(
    index: Annotated[Path, typer.Option(help="Index directory made by 'embed'.")],
    run: Annotated[Path | None, typer.Option(help="Run directory (default: the one in the manifest).")] = None,
) -> None:
    """Export the index's query encoder to ONNX (INDEX/query_encoder), which 'serve' then runs."""
    from make_retrieval.pipeline import export_query_encoder

    path = export_query_encoder(index, run)
    console.print(f"query encoder exported -> {path}")


@app.command()
@_fail_on_data_errors
def sync(
    index: Annotated[Path, typer.Option(help="Index directory (FAISS or Milvus).")],
    data: Annotated[Path, typer.Option(help="Data directory whose products the index must match.")],
    run: Annotated[Path | None, typer.Option(help="Run directory (default: the one in the manifest).")] = None,
    skip_bad_rows: SkipBadRows = False,
) -> None:
    """Update an index in place to match the catalog: embed new or changed products, delete
    products that are gone; the rest is not re-embedded."""
    from make_retrieval.pipeline import sync_index

    report = sync_index(index, data, run, skip_bad_rows)
    console.print(
        f"added {report.added}, re-embedded {report.updated}, deleted {report.deleted}, "
        f"unchanged {report.unchanged} -> {index}"
    )


@app.command("to-milvus")
@_fail_on_data_errors
def to_milvus(
    index: Annotated[Path, typer.Option(help="FAISS index directory made by 'embed'.")],
    uri: Annotated[str, typer.Option(help="Milvus URI: a local file (Milvus Lite) or http://host:19530.")],
    out: Annotated[Path, typer.Option(help="Index directory to write (its manifest points at Milvus).")],
    collection: Annotated[str, typer.Option(help="Collection name.")] = "products",
    replace: Annotated[bool, typer.Option(help="Drop an existing collection of that name first.")] = False,
) -> None:
    """Copy an index into Milvus (no re-embedding) for catalogs that outgrow one machine."""
    from make_retrieval.pipeline import to_milvus as copy_to_milvus

    store = copy_to_milvus(index, uri, collection, out, replace)
    console.print(f"{len(store)} products in Milvus collection '{collection}' at {store.uri} -> {out}")


@app.command()
@_fail_on_data_errors
def serve(
    index: Annotated[Path, typer.Option(help="Index directory (FAISS or Milvus).")],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    encoder: Annotated[Encoder, typer.Option(help="Query encoder: onnx if exported (auto), onnx or torch.")] = (
        Encoder.auto
    ),
    images: Annotated[Path | None, typer.Option(help="Catalog folder of the images (default: the manifest's).")] = (
        None
    ),
    run: Annotated[Path | None, typer.Option(help="Run directory for the torch encoder (default: manifest's).")] = (
        None
    ),
    threads: Annotated[int | None, typer.Option(min=1, help="Queries encoded at once (default: CPU cores).")] = (None),
    batching: Annotated[
        bool, typer.Option(help="Encode the queries of concurrent requests together (more queries/s under load).")
    ] = True,
) -> None:
    """Start the search service and its page (http://HOST:PORT/; API docs at /docs)."""
    import os

    _needs("serve", "fastapi", "uvicorn", "prometheus_client")
    import sys

    import faiss
    import uvicorn

    from make_retrieval.query_encoder import BatchingEncoder
    from make_retrieval.retrieval import Index
    from make_retrieval.serve.app import create_app

    # One thread per request inside FAISS and torch: concurrent requests already fill the cores, and
    # OpenMP teams per request on top of them oversubscribe (docs/BENCHMARKS.md shows the difference).
    faiss.omp_set_num_threads(1)
    opened = Index.open(index, run, encoder.value)
    if "torch" in sys.modules:  # the torch encoder was chosen (the ONNX one never imports torch)
        sys.modules["torch"].set_num_threads(1)
    workers = threads or os.cpu_count() or 1
    if batching:
        opened.retriever.encoder = BatchingEncoder(opened.retriever.encoder, workers)
    data = opened.store.manifest.get("data")
    app_ = create_app(opened, images or (Path(data) if data else None), None if batching else workers)
    name = opened.retriever.encoder.name
    console.print(f"serving {len(opened)} products with the {name} encoder on http://{host}:{port}/", highlight=False)
    uvicorn.run(app_, host=host, port=port, log_level="warning")


@app.command()
@_fail_on_data_errors
def evaluate(
    data: Annotated[Path, typer.Option(help="Data directory with products and the split's judgements.")],
    run: Annotated[Path | None, typer.Option(help="Run directory made by 'train'.")] = None,
    baseline: Annotated[str | None, typer.Option(help="Evaluate a baseline instead: bm25.")] = None,
    split: Annotated[Split, typer.Option(help="Judged split.")] = Split.test,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    skip_bad_rows: SkipBadRows = False,
) -> None:
    """Search the whole catalog for each judged query and print Recall/Precision/MRR/NDCG."""
    from make_retrieval.pipeline import evaluate_on

    if (run is None) == (baseline is None):
        raise typer.BadParameter("give exactly one of --run RUN_DIR or --baseline bm25")
    result = evaluate_on(data, split.value, run=run, baseline=baseline, skip_bad_rows=skip_bad_rows)
    if as_json:
        summary = {"model": result.retriever, "split": split.value, "queries": result.queries, **result.metrics}
        print(json.dumps({**summary, "per_category": result.per_category}))
        return
    print_results([result])


def print_results(results: list[EvaluationResult]) -> None:
    """One row per retriever with the headline metrics."""
    console.print(metrics_table(results))


@app.command()
@_fail_on_data_errors
def benchmark(
    data: Annotated[Path, typer.Option(help="Data directory with products, train, valid and test.")],
    out: Annotated[Path, typer.Option(help="Folder for the runs and results.md/json.")] = Path("runs/benchmark"),
    models: Annotated[
        str, typer.Option(help="Comma-separated: bm25 and model variants (default: the anchors and make).")
    ] = "bm25,zero-shot,mnrl-1,mnrl-5,frozen-probe,make",
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per model (first-seed, first-seed + 1, ...).")] = 3,
    first_seed: Annotated[int, typer.Option(min=0, help="The first seed.")] = 0,
    config: Annotated[
        Path | None, typer.Option(help="YAML config (default: the library defaults, what 'train' uses).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Override train.max_steps for every run.")] = None,
) -> None:
    """Train and evaluate each model over seeds; write one Markdown and JSON table."""
    from make_retrieval.benchmark import run_benchmark

    cfg = Config.load(config)
    if max_steps is not None:
        cfg.train.max_steps = max_steps
    names = [m.strip() for m in models.split(",") if m.strip()]
    seed_range = range(first_seed, first_seed + seeds)
    run_benchmark(data, out, cfg, names, seed_range, log=lambda line: err.print(line, highlight=False))
    console.print((out / "results.md").read_text(), highlight=False, markup=False)


@app.command()
@_fail_on_data_errors
def demo(
    data: Annotated[Path | None, typer.Option(help="Data directory (default: the bundled demo catalog).")] = None,
    out: Annotated[Path, typer.Option(help="Run directory.")] = Path("runs/demo"),
    config: Annotated[Path | None, typer.Option(help="YAML config (default: the demo config).")] = None,
    skip_bad_rows: SkipBadRows = False,
) -> None:
    """Train on the bundled catalog, index it, and compare MAKE with BM25 on the test split."""
    from make_retrieval.pipeline import run_demo

    run_demo(data, out, config, console, print_results, skip_bad_rows)


if __name__ == "__main__":
    app()
