"""Training-step memory and precision switches: gradient checkpointing keeps the gradients, bf16
autocast with gradient caching keeps them within bf16's precision, and fp16 without a GPU is refused."""

from __future__ import annotations

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
from make_retrieval.train.step import StepOptions, backward


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


def test_bf16_with_gradient_caching_gives_the_fp32_gradients(tiny_bert: Path, data_dir: Path) -> None:
    """bf16 autocast with a gradient cache of 3 rows: the loss and every gradient of the fp32 one-pass
    step, within bf16's precision (and not bit for bit: autocast did run)."""
    batch, criterion = make_batch(data_dir, True), MAKELoss.for_config(tiny_model_config(tiny_bert), LossConfig())
    results = []
    for options in (StepOptions(), StepOptions(grad_cache_chunk=3, precision="bf16")):
        torch.manual_seed(0)
        model = MAKEModel(tiny_model_config(tiny_bert)).eval()  # no dropout: both passes see the same model
        logged = backward(model, criterion, batch, Distributed(), options)
        results.append((logged, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (fp32_logged, fp32), (bf16_logged, bf16) = results
    assert bf16_logged["loss"] == pytest.approx(fp32_logged["loss"], rel=0.02)
    assert fp32.keys() == bf16.keys()
    cosine = torch.nn.functional.cosine_similarity
    whole = [torch.cat([g[n].flatten() for n in sorted(fp32)]) for g in (fp32, bf16)]
    assert cosine(*whole, dim=0) > 0.99 and (whole[1].norm() / whole[0].norm()).item() == pytest.approx(1, abs=0.1)
    for name, grad in fp32.items():
        if grad.numel() >= 64 and grad.norm() > 1e-6:  # scalars (temperatures) are bf16 noise alone
            assert cosine(grad.flatten(), bf16[name].flatten(), dim=0) > 0.9, name
    assert any(not torch.equal(bf16[name], grad) for name, grad in fp32.items())


def test_fp16_needs_a_gpu(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    tiny_config.train.precision = "fp16"
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        train(tiny_config, data_dir, tmp_path / "run", progress=False)
