"""The index and search commands of ``make-retrieval``: embed, search, explain, export-onnx, sync,
to-milvus, serve (``cli.py`` registers them under these names)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from make_retrieval.cli_support import (
    Encoder,
    Fusion,
    IndexKind,
    Mode,
    SkipBadRows,
    console,
    fail_on_data_errors,
    needs,
)
from make_retrieval.config import SHARD_SIZE, Config
from make_retrieval.display import hits_table, weights_table
from make_retrieval.errors import IndexFileError


@fail_on_data_errors
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
    lexical: Annotated[
        bool | None, typer.Option(help="Build the lexical (BM25) channel for hybrid search (default: index.lexical).")
    ] = None,
    lexical_fields: Annotated[
        str | None, typer.Option(help="Metadata columns BM25 reads besides the title, e.g. brand,model.")
    ] = None,
    fusion: Annotated[Fusion | None, typer.Option(help="Hybrid fusion: auto (chosen on valid), weighted or rrf.")] = (
        None
    ),
    lexical_weight: Annotated[
        float | None, typer.Option(min=0.0, help="Weighted fusion's lexical weight (default: chosen on valid).")
    ] = None,
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
        lexical=lexical, lexical_fields=lexical_fields, fusion=fusion.value if fusion is not None else None,
        lexical_weight=lexical_weight,
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
    if "hybrid" in m:
        from make_retrieval.index.fusion import Fusion as Fused

        fused = Fused.from_dict(m["hybrid"]).describe()
        console.print(f"lexical channel (BM25) -> {out / 'lexical'}; hybrid search fuses {fused}", highlight=False)


@fail_on_data_errors
def search(
    query: Annotated[str, typer.Argument(help="What a shopper types.")],
    index: Annotated[Path, typer.Option(help="Index directory made by 'embed' (or 'to-milvus').")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Results to show.")] = 10,
    category: Annotated[str | None, typer.Option(help="Only products of this category.")] = None,
    run: Annotated[Path | None, typer.Option(help="Run directory (default: the one in the manifest).")] = None,
    encoder: Annotated[Encoder, typer.Option(help="Query encoder: onnx if exported (auto), onnx or torch.")] = (
        Encoder.auto
    ),
    mode: Annotated[Mode, typer.Option(help="dense (MAKE), lexical (BM25) or hybrid (both fused).")] = Mode.dense,
    hybrid: Annotated[bool, typer.Option("--hybrid", help="Short for --mode hybrid.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout, with metadata.")] = False,
) -> None:
    """Search the index; prints id, title, score, the product's modality weights and the channels
    that found it."""
    from make_retrieval.retrieval import Index

    if hybrid and mode.value not in ("dense", "hybrid"):
        raise typer.BadParameter(f"--hybrid and --mode {mode.value} ask for two modes; give one")
    chosen = "hybrid" if hybrid else mode.value
    result = Index.open(index, run, encoder.value).search([query], k, category, chosen)[0]
    results = [hit.to_dict() for hit in result.hits]
    if as_json:
        answer = {"query": query, "mode": chosen, "query_weights": result.weights, "results": results}
        print(json.dumps(answer, ensure_ascii=False))
        return
    console.print(hits_table(query, result.weights, results))


@fail_on_data_errors
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


@fail_on_data_errors
def export_onnx(
    index: Annotated[Path, typer.Option(help="Index directory made by 'embed'.")],
    run: Annotated[Path | None, typer.Option(help="Run directory (default: the one in the manifest).")] = None,
) -> None:
    """Export the index's query encoder to ONNX (INDEX/query_encoder), which 'serve' then runs."""
    from make_retrieval.pipeline import export_query_encoder

    path = export_query_encoder(index, run)
    console.print(f"query encoder exported -> {path}")


@fail_on_data_errors
def sync(
    index: Annotated[Path, typer.Option(help="Index directory (FAISS or Milvus).")],
    data: Annotated[Path, typer.Option(help="Data directory whose products the index must match.")],
    run: Annotated[Path | None, typer.Option(help="Run directory (default: the one in the manifest).")] = None,
    skip_bad_rows: SkipBadRows = False,
) -> None:
    """Update an index in place to match the catalog: embed new or changed products, delete
    products that are gone; the rest is not re-embedded. The lexical channel is rebuilt from the
    catalog when anything changed."""
    from make_retrieval.pipeline import sync_index

    report = sync_index(index, data, run, skip_bad_rows)
    console.print(
        f"added {report.added}, re-embedded {report.updated}, deleted {report.deleted}, "
        f"unchanged {report.unchanged}{'; lexical channel rebuilt' if report.lexical else ''} -> {index}"
    )


@fail_on_data_errors
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


@fail_on_data_errors
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

    needs("serve", "fastapi", "uvicorn", "prometheus_client")
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


#: (command name, function) as ``cli.py`` registers them.
COMMANDS = (
    ("embed", embed),
    ("search", search),
    ("explain", explain),
    ("export-onnx", export_onnx),
    ("sync", sync),
    ("to-milvus", to_milvus),
    ("serve", serve),
)
