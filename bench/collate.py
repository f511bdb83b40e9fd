"""Collate time of one global training batch (``BatchBuilder``: masks, keyword strings, rank slice)
with Keyword Enhancement on, images stubbed out, at several global batch sizes. Issue 22's target:
under 0.5 s at 4,096 on 2 cores.

    python bench/collate.py --data data/demo --sizes 64,256,1024,4096 --world-size 1 --hard-negatives
"""

from __future__ import annotations

import random
import statistics
import time

import torch
from common import bench_parser

from make_retrieval.config import Config
from make_retrieval.data.batches import BatchBuilder, ClickDataset, SimilarQueries
from make_retrieval.data.keywords import KeywordExtractor
from make_retrieval.data.pairs import load_data_dir


def stub_image(product: int) -> torch.Tensor:
    """What a cached frozen-tower feature costs to read, roughly: a small tensor (no decoding)."""
    return torch.zeros(4)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--sizes", default="64,256,1024,4096")
    parser.add_argument("--world-size", type=int, default=1, help="collate as rank 0 of this many ranks")
    parser.add_argument("--hard-negatives", action="store_true", help="one mined negative per query")
    parser.add_argument("--repeats", type=int, default=3, help="timed collates per size (the median is printed)")
    args = parser.parse_args()
    config = Config.load(args.config)
    data = load_data_dir(args.data, ("train",))
    assert data.train is not None
    clicks = zip(data.train.queries, data.train.products, strict=True)
    keywords = KeywordExtractor.fit(data.catalog.titles, clicks, config.model.num_keywords)
    similar = SimilarQueries(config.loss.similar_query_rule, config.loss.similar_query_threshold)
    builder = BatchBuilder(data.catalog, keywords, similar, stub_image, 0, args.world_size)
    if args.hard_negatives:
        draw = random.Random(0)
        products = range(len(data.catalog.product_ids))
        builder.set_hard_negatives({q: draw.sample(products, 20) for q in set(data.train.queries)}, seed=0)
    dataset = ClickDataset(data.train)
    order = list(range(len(dataset)))
    random.Random(0).shuffle(order)
    print(f"{args.data}: world size {args.world_size}, hard negatives {args.hard_negatives}")
    for size in (int(s) for s in args.sizes.split(",")):
        items = [dataset[order[i % len(order)]] for i in range(size)]
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            batch = builder(items)
            times.append(time.perf_counter() - started)
        columns = batch.targets.positives.shape[1]
        median = statistics.median(times)
        print(f"global batch {size:5d} ({columns} columns): collate {median:.4f} s (median of {len(times)})")


if __name__ == "__main__":
    main()
