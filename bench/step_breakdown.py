"""Where one training step's time goes at several global batch sizes, with gradient caching, in one
process: collate (masks and keyword strings), the towers' first pass without gradients, the loss
over the whole batch, the towers' replayed forward and their backward from the cached gradients,
and the rest (the loss's own backward, clipping, AdamW). Under torchrun a gather of the embeddings
would come between the first pass and the loss; in one process it is a no-op.

    python bench/step_breakdown.py --data data/demo --sizes 256,1024 --chunk 256
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from common import bench_parser

import make_retrieval.train.step as step_module
from make_retrieval.config import Config
from make_retrieval.data.batches import BatchBuilder, ClickDataset, SimilarQueries
from make_retrieval.data.keywords import KeywordExtractor
from make_retrieval.data.pairs import load_data_dir
from make_retrieval.distributed import Distributed
from make_retrieval.model.image_cache import image_inputs
from make_retrieval.model.make import MAKEModel
from make_retrieval.train.step import TrainingStep


def timed(seconds: dict[str, float], name: Callable[[], str], function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, adding the time of every call to ``seconds[name()]``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[name()] += time.perf_counter() - started

    return wrapper


def main() -> None:
    parser = bench_parser(__doc__)
    parser.set_defaults(config=None)
    parser.add_argument("--sizes", default="256,1024")
    parser.add_argument("--chunk", type=int, default=256, help="train.grad_cache_chunk")
    args = parser.parse_args()
    config = Config.load(args.config)  # the library defaults unless --config says otherwise
    config.train.grad_cache_chunk = args.chunk
    data = load_data_dir(args.data, ("train",))
    assert data.train is not None
    clicks = zip(data.train.queries, data.train.products, strict=True)
    keywords = KeywordExtractor.fit(data.catalog.titles, clicks, config.model.num_keywords)
    torch.manual_seed(0)
    model = MAKEModel(config.model, config.loss.init_temperature)
    similar = SimilarQueries(config.loss.similar_query_rule, config.loss.similar_query_threshold)
    builder = BatchBuilder(data.catalog, keywords, similar, image_inputs(model, data.catalog))
    seconds: dict[str, float] = defaultdict(float)
    tower = lambda: "towers, replayed forward" if torch.is_grad_enabled() else "towers, first pass (no grad)"  # noqa: E731
    model.encode_queries = timed(seconds, tower, model.encode_queries)  # type: ignore[method-assign]
    model.encode_products = timed(seconds, tower, model.encode_products)  # type: ignore[method-assign]
    step_module._backward_rows = timed(seconds, lambda: "towers, backward", step_module._backward_rows)
    dataset = ClickDataset(data.train)
    model.train()
    print(f"{args.data}: grad_cache_chunk {args.chunk}, {torch.get_num_threads()} threads")
    TrainingStep(model, config, Distributed(), total_steps=10)(builder([dataset[i] for i in range(64)]))  # warm-up
    for size in (int(s) for s in args.sizes.split(",")):
        step = TrainingStep(model, config, Distributed(), total_steps=10)
        step.criterion.forward = timed(seconds, lambda: "loss", step.criterion.forward)  # type: ignore[method-assign]
        seconds.clear()
        started = time.perf_counter()
        batch = builder([dataset[i % len(dataset)] for i in range(size)])
        seconds["collate"] = time.perf_counter() - started
        stepped = time.perf_counter()
        step(batch)
        total = time.perf_counter() - started
        seconds["rest (loss backward, clip, AdamW)"] = time.perf_counter() - stepped - sum(
            v for k, v in seconds.items() if k != "collate"
        )
        parts = ", ".join(f"{name} {value:.2f} s ({value / total:.0%})" for name, value in seconds.items())
        print(f"global batch {size}: step {total:.2f} s = {parts}")


if __name__ == "__main__":
    main()
