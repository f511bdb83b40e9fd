"""Training-step memory and precision switches: gradient checkpointing keeps the gradients, bf16
autocast with gradient caching trains, and fp16 without a GPU is refused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from helpers import make_batch, tiny_model_config
from make_retrieval.config import Config, LossConfig
from make_retrieval.distributed import Distributed
from make_retrieval.errors import ConfigError
from make_retrieval.losses import MAKELoss
from make_retrieval.model.make import MAKEModel
from make_retrieval.train.loop import train
from make_retrieval.train.step import backward


def _grads(bert: Path, data_dir: Path, checkpointing: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = MAKEModel(tiny_model_config(bert)).train()  # checkpointing only acts in training mode
    if checkpointing:
        model.enable_gradient_checkpointing()
    torch.manual_seed(1)  # the same dropout masks in both runs (recomputation replays them)
    backward(model, MAKELoss.for_config(model.config, LossConfig()), make_batch(data_dir, True), Distributed())
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_keeps_the_gradients(tiny_bert: Path, data_dir: Path) -> None:
    plain, checkpointed = _grads(tiny_bert, data_dir, False), _grads(tiny_bert, data_dir, True)
    assert plain.keys() == checkpointed.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-4, atol=2e-5, msg=name)


def test_bf16_with_gradient_caching_trains(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    tiny_config.train.precision, tiny_config.train.grad_cache_chunk = "bf16", 3
    train(tiny_config, data_dir, tmp_path / "run", progress=False)
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [s for s in steps if "loss" in s]
    assert logged and all(math.isfinite(s["loss"]) for s in logged)
    # the log carries Modal Adaptation's mean weights, which sum to 1 over the modalities
    for side in "ab":
        assert sum(logged[-1][f"{side}_{m}"] for m in ("title", "image", "fused")) == pytest.approx(1.0, abs=0.02)


def test_fp16_needs_a_gpu(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    tiny_config.train.precision = "fp16"
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        train(tiny_config, data_dir, tmp_path / "run", progress=False)
