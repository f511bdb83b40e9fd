"""Cross-device negatives and gradient caching: 2 gloo ranks with batch B train exactly like one
process with batch 2B, and the gradient-cached step equals the one-pass step."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from helpers import make_batch, save_tiny_bert, tiny_model_config
from make_retrieval.config import Config, LossConfig
from make_retrieval.distributed import Distributed, init_distributed
from make_retrieval.losses import MAKELoss
from make_retrieval.model.make import MAKEModel
from make_retrieval.train.loop import train
from make_retrieval.train.step import StepOptions, average_gradients, backward

#: Trains models, loads real weights or starts processes: deselect with -m 'not slow' for a quick run.
pytestmark = pytest.mark.slow

#: Hard negatives for some queries only, so the two ranks hold different numbers of product columns.
HARD = {"red shirt": [5]}
SIZE = 8


def _model(bert: Path) -> MAKEModel:
    torch.manual_seed(0)
    # eval(): no dropout, so the one-process and the two-rank passes draw nothing random
    return MAKEModel(tiny_model_config(bert)).eval()


def _step(bert: Path, data_dir: Path, context: Distributed, chunk: int) -> dict[str, object]:
    """Loss values and averaged gradients of one step on this rank's slice of the global batch."""
    model = _model(bert)
    batch = make_batch(data_dir, True, SIZE, hard_negatives=HARD, rank=context.rank, world_size=context.world_size)
    criterion = MAKELoss.for_config(model.config, LossConfig())
    logged = backward(model, criterion, batch, context, StepOptions(grad_cache_chunk=chunk))
    average_gradients(model, context)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {"logged": logged, "grads": grads, "columns": len(batch.titles)}


def _assert_same(got: dict[str, object], want: dict[str, object]) -> None:
    assert got["logged"].keys() == want["logged"].keys()
    for name, value in want["logged"].items():
        assert got["logged"][name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert want["grads"].keys() <= got["grads"].keys()
    for name, grad in want["grads"].items():
        torch.testing.assert_close(got["grads"][name], grad, rtol=1e-4, atol=2e-5, msg=name)


def _rank(rank: int, port: int, bert: Path, data_dir: Path, out: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)
    context = init_distributed()
    results = {"plain": _step(bert, data_dir, context, 0), "cached": _step(bert, data_dir, context, 3)}
    torch.save(results, out / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_gradient_cache_equals_one_pass(tiny_bert: Path, data_dir: Path) -> None:
    one = Distributed()
    plain = _step(tiny_bert, data_dir, one, 0)
    assert plain["columns"] == SIZE + 2 and plain["logged"]["keyword_product"] > 0
    for chunk in (3, 64):
        _assert_same(_step(tiny_bert, data_dir, one, chunk), plain)


def test_two_gloo_ranks_equal_one_process_with_the_doubled_batch(
    tiny_bert: Path, data_dir: Path, tmp_path: Path
) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    mp.spawn(_rank, args=(port, tiny_bert, data_dir, tmp_path), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    # items 0-3 go to rank 0 (two "red shirt" rows, two hard negatives), 4-7 to rank 1 (none)
    assert [r["plain"]["columns"] for r in ranks] != [SIZE // 2] * 2
    single = _step(tiny_bert, data_dir, Distributed(), 0)
    for result in ranks:
        _assert_same(result["plain"], single)
        _assert_same(result["cached"], single)


def test_torchrun_trains_with_two_ranks_like_one_process(data_dir: Path, tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2 make-retrieval train` with batch 4 logs what one process with
    batch 8 logs (rank 0 alone writes the run folder). No dropout: the masks of one process drawing
    8 rows and two drawing 4 each differ, the arithmetic does not."""
    tiny_config = Config(model=tiny_model_config(save_tiny_bert(tmp_path / "bert", dropout=0.0)))
    tiny_config.train.max_steps, tiny_config.train.validate, tiny_config.train.log_every = 2, False, 1
    tiny_config.train.batch_size = 4
    tiny_config.save(tmp_path / "two.yaml")
    tiny_config.train.batch_size = 8
    single = train(tiny_config, data_dir, tmp_path / "one", progress=False)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "make_retrieval.cli", "train", "--data", str(data_dir)]
    command += ["--out", str(tmp_path / "two"), "--config", str(tmp_path / "two.yaml")]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained 2 steps") == 1, "only rank 0 reports"
    logs = [_losses(tmp_path / run / "metrics.jsonl") for run in ("one", "two")]
    assert single.steps == 2 and len(logs[0]) == 2
    for one, two in zip(*logs, strict=True):
        assert two == pytest.approx(one, rel=1e-4)


def _losses(path: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in path.read_text().splitlines() if '"loss"' in line]
