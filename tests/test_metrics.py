"""The metrics log: every number of metrics.jsonl is also a TensorBoard scalar at its step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from make_retrieval.config import Config
from make_retrieval.train.loop import train
from make_retrieval.train.metrics import TENSORBOARD, MetricsLog


def test_tensorboard_mirrors_the_jsonl_log(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    train(tiny_config, data_dir, tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    events = EventAccumulator(str(tmp_path / "run" / TENSORBOARD))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    wanted = {"train/loss", "train/query_product", "train/lr", "train/samples_per_s", "train/b_title", "train/a_image"}
    assert wanted | {"train/temperature/query_product", "epoch_end/valid/ndcg@10"} <= tags
    for tag in ("loss", "lr", "b_image"):
        logged = [(e.step, e.value) for e in events.Scalars(f"train/{tag}")]
        assert logged == [(r["step"], pytest.approx(r[tag], rel=1e-6)) for r in steps], tag

    tiny_config.train.tensorboard = False
    train(tiny_config, data_dir, tmp_path / "plain", progress=False)
    assert not (tmp_path / "plain" / TENSORBOARD).exists()


def test_a_resumed_log_replaces_the_killed_runs_later_events(tmp_path: Path) -> None:
    killed = MetricsLog(tmp_path, tensorboard=True)
    for step in range(1, 6):
        killed.write({"step": step, "loss": float(step)})
    killed.close()
    resumed = MetricsLog(tmp_path, keep_lines=3, tensorboard=True, resume_step=3)  # state saved after step 3
    for step in (4, 5):
        resumed.write({"step": step, "loss": 10.0 * step})
    resumed.close()
    events = EventAccumulator(str(tmp_path / TENSORBOARD))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 1), (2, 2), (3, 3), (4, 40), (5, 50)]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["loss"] for line in lines] == [1, 2, 3, 40, 50]
