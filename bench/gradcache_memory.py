"""Peak memory of one training step (forward, loss, backward) at a given batch size, with and without
gradient caching. Each setting runs in its own process so that peaks do not mix.

    python bench/gradcache_memory.py --data data/demo --settings 256:0 4096:256 512:0 1024:0
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from common import bench_parser, model_and_batch, peak_rss_mb, reset_peak_rss, rss_mb

from make_retrieval.config import Config
from make_retrieval.distributed import Distributed
from make_retrieval.losses import MAKELoss
from make_retrieval.train.step import StepOptions, backward


def one(config_path: Path, data: Path, batch_size: int, chunk: int) -> None:
    """Child: one step; prints the peak resident set above what model and batch already hold."""
    config = Config.load(config_path)
    model, batch, _ = model_and_batch(config, data, batch_size)
    model.train()
    criterion = MAKELoss.for_config(config.model, config.loss)
    before = rss_mb()
    reset_peak_rss()  # loading the model and decoding the images had peaks of their own
    started = time.perf_counter()
    backward(model, criterion, batch, Distributed(), StepOptions(grad_cache_chunk=chunk))
    seconds = time.perf_counter() - started
    peak = peak_rss_mb() - before
    print(f"batch {batch_size:5d}  chunk {chunk or '-':>5}  step peak +{peak:8.0f} MB  {seconds:6.1f} s")


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--settings", nargs="+", default=["256:0", "4096:256"], help="BATCH:CHUNK (0 = no cache)")
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        one(args.config, args.data, *args.child)
        return
    for setting in args.settings:
        size, chunk = setting.split(":")
        command = [sys.executable, __file__, "--data", str(args.data), "--config", str(args.config)]
        done = subprocess.run([*command, "--child", size, chunk], capture_output=True, text=True)
        failed = f"batch {size} chunk {chunk}: failed {done.stderr[-300:]}"
        print(done.stdout.strip() if done.returncode == 0 else failed)


if __name__ == "__main__":
    main()
