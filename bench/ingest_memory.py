"""Peak memory of rank 0 writing an embedded catalog into its target: a FAISS folder (rank 0 builds the
index and the product table from every rank's shard files) against straight into a Milvus server
(``embed --milvus-uri``: each rank upserts its own shards, nothing is merged).

The catalog is ``--count`` products with random 8-word titles from a 2,000-word vocabulary and no
images; the model is a tiny random text-only MAKE (2-layer BERT of width 32, the title modality
only, projected to ``--dim``-d index vectors: 384, MAKE's 3 x 128, by default) saved as a run
directory, so the figures measure the pipeline's memory, not a model's. The shards are embedded once,
here, and hard-linked into each target's ``shards`` folder, where ``embed`` finds them done (its
resume path): each measured ``embed`` then reads the shards and writes its target, which is the part
whose memory could grow with the catalog. Each runs alone in one process (rank 0 of a one-rank job)
under ``/usr/bin/time -f %M``; ``--code DIR`` runs the FAISS targets with another checkout too (the
code before a change); the Milvus server is started here as the tests start it
(tests/milvus_server.py). The ivfpq target uses ``--ivf-lists`` (1,024) rather than the default 4 sqrt(N)
lists: k-means of 4,000 lists over 10^6 rows takes most of an hour on 2 cores, and IVF-PQ trains on at
most 256 rows per list either way, so the training sample, not the catalog, sets that part of its memory.

    python bench/ingest_memory.py --count 1000000 --code /tmp/before --code .
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from make_retrieval.config import Config, ImageEncoderConfig, ModelConfig, TextEncoderConfig
from make_retrieval.distributed import Distributed
from make_retrieval.embed import embed_catalog
from make_retrieval.model.checkpoint import save_checkpoint
from make_retrieval.model.make import MAKEModel
from make_retrieval.pipeline import _Embedding

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from milvus_server import milvus_server

from helpers import save_tiny_bert


def catalog(folder: Path, count: int, seed: int = 0) -> Path:
    """A products table of ``count`` text-only products (random titles, a category each)."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(2000)]
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "product_id": [f"p{i:07d}" for i in range(count)],
            "title": [" ".join(rng.choices(words, k=8)) for _ in range(count)],
            "category": [f"c{rng.randrange(50)}" for _ in range(count)],
        }
    )
    pq.write_table(table, folder / "products.parquet")
    return folder


def tiny_run(folder: Path, dim: int) -> Path:
    """A run directory (config.yaml + last.pt) of a tiny random text-only model with ``dim``-d vectors."""
    bert = save_tiny_bert(folder / "bert")
    text = TextEncoderConfig(path=str(bert), max_length=16)
    model_config = ModelConfig(
        query_encoder=text, title_encoder=text, image_encoder=ImageEncoderConfig(backbone="vit"),
        image_modality=False, fusion=False, modal_adaptation=False, keyword_enhancement=False, embed_dim=dim,
    )
    config = Config(model=model_config)
    config.save(folder / "config.yaml")
    torch.manual_seed(0)
    save_checkpoint(folder / "last.pt", MAKEModel(model_config), {})
    return folder


def make_shards(run: Path, data: Path, shard_dir: Path, shard_size: int, batch_size: int) -> float:
    """Embed the catalog into ``shard_dir`` the way ``embed`` does (same keys, so ``embed`` reuses them); seconds."""
    started = time.perf_counter()
    embedding = _Embedding.load(run, data, Distributed(), False, None)
    model, catalog = embedding.model, embedding.data.catalog
    embed_catalog(model, catalog, shard_dir, embedding.model_key, Distributed(), shard_size, batch_size)
    return time.perf_counter() - started


def linked(shard_dir: Path, out: Path) -> Path:
    """``out`` with a ``shards`` folder of hard links to ``shard_dir``'s files (``embed`` deletes its copy)."""
    (out / "shards").mkdir(parents=True)
    for path in shard_dir.iterdir():
        os.link(path, out / "shards" / path.name)
    return out


def peak_rss(code: Path, args: list[str]) -> tuple[float, float]:
    """(seconds, peak resident MB) of ``make-retrieval ARGS`` run from checkout ``code`` in its own process."""
    command = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "make_retrieval.cli", *args]
    env = {**os.environ, "PYTHONPATH": str(code.resolve())}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=code.resolve())
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return time.perf_counter() - started, int(done.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--shard-size", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1024, help="products per forward pass")
    parser.add_argument("--dim", type=int, default=384, help="index vector size (MAKE's 3 x 128 by default)")
    parser.add_argument("--code", type=Path, action="append", help="checkout for the FAISS targets (repeatable)")
    parser.add_argument("--index", action="append", choices=["flat", "hnsw", "ivfpq"], help="FAISS kinds")
    parser.add_argument("--ivf-lists", type=int, default=1024, help="IVF lists of the ivfpq target (k-means time)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        root = Path(tmp)
        data, run = catalog(root / "data", args.count), tiny_run(root / "run", args.dim)
        shard_dir = root / "shards"
        seconds = make_shards(run, data, shard_dir, args.shard_size, args.batch_size)
        print(json.dumps({"count": args.count, "shards_embedded_s": round(seconds)}), flush=True)
        common = ["embed", "--run-dir", str(run), "--data", str(data), "--shard-size", str(args.shard_size)]
        targets = itertools.product(args.code or [Path(".")], args.index or ["flat", "ivfpq"])
        for n, (code, kind) in enumerate(targets):
            out = linked(shard_dir, root / f"faiss-{n}")
            knobs = ["--index", kind, *(["--ivf-lists", str(args.ivf_lists)] if kind == "ivfpq" else [])]
            measured = peak_rss(code, [*common, "--out", str(out), *knobs])
            report(args.count, f"faiss {kind} ({code})", *measured)
        with milvus_server(root / "milvus") as uri:
            out = linked(shard_dir, root / "milvus-index")
            measured = peak_rss(Path("."), [*common, "--out", str(out), "--milvus-uri", uri])
        report(args.count, "milvus server", *measured)


def report(count: int, target: str, seconds: float, mb: float) -> None:
    """One JSON line of figures."""
    print(json.dumps({"count": count, "target": target, "seconds": round(seconds), "peak_mb": round(mb)}), flush=True)


if __name__ == "__main__":
    main()
