"""Peak memory of the process that embeds a synthetic catalog: into a FAISS folder (rank 0 merges
every shard's vectors, then builds the index and the product table) against straight into a Milvus
server (``embed --milvus-uri``: each rank upserts its own shards, nothing is merged).

The catalog is ``--count`` products with random 8-word titles from a 2,000-word vocabulary and no
images; the model is a tiny random text-only MAKE (2-layer BERT of width 32, the title modality
only, projected to ``--dim``-d index vectors: 384, MAKE's 3 x 128, by default) saved as a run
directory, so the figures measure the pipeline's memory, not a model's. Each
``embed`` runs alone in one process (rank 0 of a one-rank job) under ``/usr/bin/time -f %M``; the
Milvus server is started here as the tests start it (tests/milvus_server.py).

    python bench/ingest_memory.py --count 1000000
"""

from __future__ import annotations

import argparse
import json
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
from make_retrieval.model.checkpoint import save_checkpoint
from make_retrieval.model.make import MAKEModel

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


def peak_rss(args: list[str]) -> tuple[float, float]:
    """(seconds, peak resident MB) of ``make-retrieval ARGS`` in its own process."""
    command = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "make_retrieval.cli", *args]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return time.perf_counter() - started, int(done.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--shard-size", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384, help="index vector size (MAKE's 3 x 128 by default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        root = Path(tmp)
        data, run = catalog(root / "data", args.count), tiny_run(root / "run", args.dim)
        common = ["embed", "--run-dir", str(run), "--data", str(data), "--shard-size", str(args.shard_size)]
        report(args.count, "faiss folder", *peak_rss([*common, "--out", str(root / "faiss")]))
        with milvus_server(root / "milvus") as uri:
            measured = peak_rss([*common, "--out", str(root / "milvus-index"), "--milvus-uri", uri])
        report(args.count, "milvus server", *measured)


def report(count: int, target: str, seconds: float, mb: float) -> None:
    """One JSON line of figures."""
    print(json.dumps({"count": count, "target": target, "seconds": round(seconds), "peak_mb": round(mb)}), flush=True)


if __name__ == "__main__":
    main()
