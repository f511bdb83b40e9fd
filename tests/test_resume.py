"""Checkpoint and resume: a run killed with SIGKILL between states and resumed ends with the metrics
log of an uninterrupted run; states are atomic and only the newest are kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import save_tiny_bert, shard_train, tiny_model_config
from make_retrieval.config import Config
from make_retrieval.errors import ConfigError
from make_retrieval.train.loop import train
from make_retrieval.train.state import STATES

#: Trains models, loads real weights or starts processes: deselect with -m 'not slow' for a quick run.
pytestmark = pytest.mark.slow

STEPS = 9


def _config(tmp_path: Path, hard_negatives: bool) -> Config:
    config = Config(model=tiny_model_config(save_tiny_bert(tmp_path / "bert")))  # with dropout: RNG states matter
    train_config = config.train
    train_config.batch_size, train_config.epochs, train_config.max_steps = 8, 3, STEPS
    train_config.log_every, train_config.state_every, train_config.keep_states = 1, 2, 2
    train_config.hard_negatives, train_config.hard_negative_depth = hard_negatives, 3
    train_config.max_valid_queries = 4
    return config


def _log(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        record.pop("samples_per_s", None)  # wall-clock, the one field that may differ
    return records


def _assert_same_log(got: list[dict], want: list[dict]) -> None:
    assert [r.get("event") for r in got] == [r.get("event") for r in want]
    for a, b in zip(got, want, strict=True):
        assert a.keys() == b.keys()
        for key, value in b.items():
            assert a[key] == (pytest.approx(value, rel=1e-5) if isinstance(value, float) else value), key


@pytest.mark.parametrize(("hard_negatives", "shards"), [(False, False), (True, False), (False, True)])
def test_sigkill_then_resume_gives_the_uninterrupted_log(
    data_dir: Path, tmp_path: Path, hard_negatives: bool, shards: bool
) -> None:
    config = _config(tmp_path, hard_negatives)
    if shards:  # streamed from train/*.parquet, images decoded in 2 worker processes
        shard_train(data_dir)
        config.train.num_workers = 2
    config.save(tmp_path / "config.yaml")
    # 64 pairs / 8 = 8 steps per epoch: states after steps 2, 4, 6, 8 (epoch end)
    train(config, data_dir, tmp_path / "whole", progress=False)
    whole = _log(tmp_path / "whole")
    assert sum(1 for r in whole if "loss" in r) == STEPS

    run = tmp_path / "killed"
    command = [sys.executable, "-m", "make_retrieval.cli", "train", "--data", str(data_dir), "--out", str(run)]
    command += ["--config", str(tmp_path / "config.yaml")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = run / STATES / "step-000000006.pt"
    deadline = time.time() + 300
    while not target.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run must be killed, not finished"
    states = sorted((run / STATES).glob("step-*.pt"))
    assert target in states and len(states) <= 2, "only the newest states are kept"
    for state in states:  # written atomically: a state the kill could cut short is never under its name
        torch.load(state, map_location="cpu", weights_only=False)

    train(config, data_dir, run, progress=False, resume=True)
    _assert_same_log(_log(run), whole)
    # a temporary file (files.replacing: ".NAME.tmp.SUFFIX") the kill left is replaced by the resumed run
    assert not [p.name for p in run.rglob(".*.tmp*")]


def test_shards_refuse_hard_negative_mining(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="hard_negatives"):
        train(_config(tmp_path, True), shard_train(data_dir), tmp_path / "run", progress=False)


def test_resume_refuses_another_config(data_dir: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, False)
    config.train.max_steps = 2
    train(config, data_dir, tmp_path / "run", progress=False)
    config.train.lr = 1.0
    with pytest.raises(ConfigError, match="cannot resume"):
        train(config, data_dir, tmp_path / "run", progress=False, resume=True)
