"""Embedding products/s of ``embed_products`` (image decoding, collation, batching) against the bare
model forward over the same products with their images decoded beforehand. Target: > 90%.

    python bench/embed_throughput.py --data data/demo --products 1024
"""

from __future__ import annotations

import time

import torch
from common import bench_parser

from make_retrieval.config import Config
from make_retrieval.data.catalog import load_catalog
from make_retrieval.data.tables import LoadReport
from make_retrieval.embed import embed_products
from make_retrieval.model.image_cache import image_inputs
from make_retrieval.model.make import MAKEModel


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--products", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0, help="image-decoding processes of embed_products")
    args = parser.parse_args()
    config = Config.load(args.config)
    catalog = load_catalog(args.data, LoadReport())
    torch.manual_seed(0)
    model = MAKEModel(config.model).eval()
    positions = range(min(args.products, len(catalog)))
    embed_products(model, catalog, args.batch_size, progress=False, positions=range(args.batch_size))  # warm-up

    started = time.perf_counter()
    embed_products(model, catalog, args.batch_size, args.workers, progress=False, positions=positions)
    ours = len(positions) / (time.perf_counter() - started)

    # the bare loop reads the same inputs (cached features for a frozen tower, else decoded pixels)
    images = image_inputs(model, catalog, positions, progress=False)
    batches = []
    for start in range(0, len(positions), args.batch_size):
        rows = positions[start : start + args.batch_size]
        pixels = torch.stack([images(p) for p in rows])
        has_image = torch.tensor([catalog.images[p] is not None for p in rows])
        batches.append(([catalog.titles[p] for p in rows], pixels, has_image))
    started = time.perf_counter()
    with torch.no_grad():
        for titles, pixels, has_image in batches:
            model.encode_products(titles, pixels, has_image)
    bare = len(positions) / (time.perf_counter() - started)
    print(f"{len(positions)} products, batch {args.batch_size}, workers {args.workers}")
    print(f"embed_products {ours:.1f} products/s, bare forward {bare:.1f} products/s, ratio {ours / bare:.1%}")


if __name__ == "__main__":
    main()
