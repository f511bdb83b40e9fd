"""How long ``train`` trains when not told: enough epochs for ``min_steps``, validation spaced by
``validate_every``, early stopping after ``patience`` validations without a better NDCG@10."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import tiny_model_config
from make_retrieval.config import Config
from make_retrieval.errors import ConfigError
from make_retrieval.train.loop import train, training_epochs


def test_epochs_follow_min_steps_unless_set() -> None:
    config = Config()
    assert config.train.epochs is None and config.train.min_steps == 150
    assert training_epochs(config, steps_per_epoch=12) == 13  # 1,050 products, 800 clicks, batch 64
    assert training_epochs(config, steps_per_epoch=78) == 2  # 5,000 clicks
    assert training_epochs(config, steps_per_epoch=170) == 1  # the demo catalog
    assert training_epochs(config, steps_per_epoch=15_000) == 1  # a large click log: one pass
    config.train.epochs = 3
    assert training_epochs(config, steps_per_epoch=12) == 3


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_default_length_on_a_tiny_catalog(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    defaults = Config().train
    tiny_config.train.epochs, tiny_config.train.max_steps = defaults.epochs, defaults.max_steps
    tiny_config.train.min_steps, tiny_config.train.validate_every = 60, 20
    result = train(tiny_config, data_dir, tmp_path / "run", progress=False)
    records = _records(tmp_path / "run")
    validated = [r["step"] for r in records if "valid" in r]
    # 64 clicks in batches of 8: 8 steps an epoch, so 8 epochs for 60 steps, validated at step 0 (the
    # untrained model, best.pt to beat) and every 24 steps
    assert result.steps == 64 and max(r.get("epoch", 0) for r in records) == 7
    assert validated == [0, 24, 48, 64]
    assert (tmp_path / "run" / "best.pt").is_file()


def test_early_stopping_after_patience_validations(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    # nothing learns (both learning rates 0), so no validation after step 0's is better
    tiny_config.train.lr = tiny_config.train.head_lr = 0.0
    tiny_config.train.epochs, tiny_config.train.max_steps = 10, None
    tiny_config.train.validate_every, tiny_config.train.patience = 8, 2
    tiny_config.train.title_lean = ""  # its event would follow the early stop (tested below)
    result = train(tiny_config, data_dir, tmp_path / "run", progress=False)
    records = _records(tmp_path / "run")
    assert [r["step"] for r in records if "valid" in r] == [0, 8, 16]
    assert records[-1]["event"] == "early_stop" and result.steps == 16
    assert json.loads((tmp_path / "run" / "train_summary.json").read_text())["steps"] == 16
    # the untrained model stayed best: best.pt is step 0's, and WiSE-FT has nothing to mix
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=True)["info"]["step"] == 0
    assert not any(r.get("event") == "wise_ft" for r in records)
    # resuming a run that stopped early finds it finished: no further step, the log unchanged
    resumed = train(tiny_config, data_dir, tmp_path / "run", progress=False, resume=True)
    assert resumed.steps == 16 and _records(tmp_path / "run") == records


def test_the_validation_metric_is_a_setting(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    tiny_config.train.valid_metric = "recall@10"
    result = train(tiny_config, data_dir, tmp_path / "run", progress=False)
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    records = _records(tmp_path / "run")
    valid = [r["valid"]["recall@10"] for r in records if "valid" in r]
    leaned = [v for r in records if r.get("event") == "title_lean" for v in r["tried"].values()]
    assert leaned, "the title lean is chosen on the validation metric too"
    assert summary["best_valid_recall@10"] == result.best == max(valid + leaned)
    tiny_config.train.valid_metric = "ndcg@11"
    with pytest.raises(ConfigError, match="valid_metric"):
        train(tiny_config, data_dir, tmp_path / "bad", progress=False)


def test_wise_ft_and_title_lean_keep_what_validates_best(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    tiny_config.train.epochs, tiny_config.train.max_steps = 3, None  # better than step 0 (see above)
    tiny_config.train.wise_ft, tiny_config.train.title_lean = "0.5", "0.5,1"
    result = train(tiny_config, data_dir, tmp_path / "run", progress=False)
    records = _records(tmp_path / "run")
    trained = [r["valid"]["ndcg@10"] for r in records if "valid" in r]
    mixed = next(r for r in records if r.get("event") == "wise_ft")
    leaned = next(r for r in records if r.get("event") == "title_lean")
    assert set(mixed["tried"]) == {"0.5"} and set(leaned["tried"]) == {"0.5", "1.0"}
    assert result.best == max([*trained, *mixed["tried"].values(), *leaned["tried"].values()])
    # best.pt is what it claims: reloaded and validated again, it scores the kept value
    from make_retrieval.data.pairs import load_data_dir
    from make_retrieval.model.checkpoint import load_model
    from make_retrieval.train.validation import Validator

    model, _, _ = load_model(tmp_path / "run")
    assert model.title_lean.item() == leaned["share"]
    # a finished run resumed chooses nothing again: its log stays as it is
    train(tiny_config, data_dir, tmp_path / "run", progress=False, resume=True)
    assert _records(tmp_path / "run") == records
    assert Validator(load_data_dir(data_dir), tiny_config.train)(model)["ndcg@10"] == pytest.approx(result.best)
    tiny_config.train.wise_ft = "0.5,1.5"
    with pytest.raises(ConfigError, match="wise_ft"):
        train(tiny_config, data_dir, tmp_path / "bad", progress=False)
    tiny_config.train.wise_ft, tiny_config.train.title_lean = "0.5", "0,1"
    with pytest.raises(ConfigError, match=r"title_lean: comma-separated shares in \(0, 1\]"):
        train(tiny_config, data_dir, tmp_path / "bad", progress=False)


def test_a_full_title_lean_ranks_by_the_title_alone(tiny_bert: Path, data_dir: Path) -> None:
    """At share 1 every query and product puts its whole weight on the title; at 0 nothing changes."""
    from make_retrieval.data.pairs import load_data_dir
    from make_retrieval.model.make import MAKEModel

    torch.manual_seed(0)
    model = MAKEModel(tiny_model_config(tiny_bert)).eval()
    catalog = load_data_dir(data_dir, splits=()).catalog
    images = torch.zeros(2, 3, 16, 16)
    with torch.no_grad():
        before = model.encode_products(catalog.titles[:2], images, torch.tensor([True, True]))
        model.title_lean.fill_(1.0)
        after = model.encode_products(catalog.titles[:2], images, torch.tensor([True, True]))
        query = model.encode_queries(["red shirt"])
    assert after.weights.tolist() == [[1.0, 0.0, 0.0]] * 2 and query.weights.tolist() == [[1.0, 0.0, 0.0]]
    torch.testing.assert_close(after.vectors[:, : after.parts["title"].shape[1]], after.parts["title"])
    assert not torch.equal(before.weights, after.weights)
