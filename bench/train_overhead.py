"""Training samples/s of our loop (``train``: data loading, image decoding, masks, logging) against a
bare PyTorch loop that steps the same model on one pre-collated batch. Target: overhead < 10%.

    python bench/train_overhead.py --data data/demo --steps 20 --warm 10 --workers 1
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch
from common import bench_parser, model_and_batch

from make_retrieval.config import Config
from make_retrieval.distributed import Distributed
from make_retrieval.losses import MAKELoss
from make_retrieval.train.loop import train
from make_retrieval.train.step import batch_loss, encode_batch


def ours(config: Config, data: Path, warm: int, steps: int) -> float:
    """Samples/s over the last ``steps`` steps of ``train`` after ``warm``, from the samples/s that
    metrics.jsonl logs every ``log_every`` steps (logging, TensorBoard included, as configured)."""
    every = config.train.log_every
    if warm % every or steps % every:
        raise SystemExit(f"--warm and --steps must be multiples of train.log_every ({every})")
    config.train.max_steps = warm + steps
    config.train.validate, config.train.image_warmup_steps = False, 0
    with tempfile.TemporaryDirectory() as run:
        train(config, data, Path(run), progress=False)
        records = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in records if "samples_per_s" in r][-(steps // every) :]
    return len(rates) / sum(1 / rate for rate in rates)  # windows of equal size: the harmonic mean


def bare(config: Config, data: Path, warm: int, steps: int) -> float:
    """Samples/s of zero_grad / forward / loss / backward / clip / AdamW step on one fixed batch."""
    model, batch, _ = model_and_batch(config, data, config.train.batch_size)
    model.train()
    criterion = MAKELoss.for_config(config.model, config.loss)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.train.lr)
    context = Distributed()
    for step in range(warm + steps):
        if step == warm:
            started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = batch_loss(model, criterion, encode_batch(model, batch), batch, context)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return steps * config.train.batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warm", type=int, default=10)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of our loop")
    args = parser.parse_args()
    config = Config.load(args.config)
    config.train.num_workers = args.workers
    ours_rate = ours(config, args.data, args.warm, args.steps)
    bare_rate = bare(Config.load(args.config), args.data, args.warm, args.steps)
    overhead = 1 - ours_rate / bare_rate
    print(f"batch {config.train.batch_size}, {args.steps} steps after {args.warm}, workers {args.workers}")
    print(f"ours {ours_rate:.2f} samples/s, bare {bare_rate:.2f} samples/s, overhead {overhead:.1%}")


if __name__ == "__main__":
    main()
