"""Image input size by quality per second: for each size, the time to compute the frozen backbone's
features of the whole catalog, the training step time, and validation NDCG@10 after a fixed number of
steps (each size in a fresh cache folder, same seed and config otherwise).

    python bench/image_size.py --data data/demo --sizes 96 128 160 224 --steps 100 --out runs/image-size
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import torch
from common import bench_parser

from make_retrieval.config import Config
from make_retrieval.data.pairs import load_data_dir
from make_retrieval.model.image_cache import CACHE_ENV, image_inputs
from make_retrieval.model.make import MAKEModel
from make_retrieval.train.loop import train


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 160, 224])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("runs/image-size"))
    args = parser.parse_args()
    catalog = load_data_dir(args.data, ()).catalog
    for size in args.sizes:
        config = Config.load(args.config)
        config.model.image_encoder = dataclasses.replace(config.model.image_encoder, image_size=size)
        config.train.epochs, config.train.max_steps, config.train.validate = 1, args.steps, True
        os.environ[CACHE_ENV] = str(args.out / f"cache-{size}")
        torch.manual_seed(0)
        started = time.perf_counter()
        inputs = image_inputs(MAKEModel(config.model), catalog, progress=False)
        features_s = time.perf_counter() - started
        result = train(config, args.data, args.out / f"run-{size}", progress=False)
        lines = (args.out / f"run-{size}" / "metrics.jsonl").read_text().splitlines()
        rates = [r["samples_per_s"] for r in map(json.loads, lines) if "samples_per_s" in r]
        row = {
            "image_size": size,
            "features_s": round(features_s, 1),
            "images_per_s": round(int(sum(i is not None for i in catalog.images)) / features_s, 1),
            "feature_bytes_per_image": int(torch.zeros(inputs.shape).numel() * 2),
            "step_s": round(config.train.batch_size / (sum(rates) / len(rates)), 2),
            "train_s": round(result.seconds, 1),
            "valid_ndcg@10": round(result.best or 0.0, 4),
        }
        print(json.dumps(row), flush=True)
        with (args.out / "results.jsonl").open("a") as handle:
            handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
