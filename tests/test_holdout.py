"""Validation hygiene (train/holdout.py): validation queries seen in training are counted and warned
about; an absent or mostly seen ``valid`` is replaced by a disjoint slice of the training queries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import COLOURS, TYPES, shard_train, write_table
from make_retrieval.config import Config, TrainConfig
from make_retrieval.data.pairs import load_data_dir
from make_retrieval.train.holdout import count_seen, plan_validation, query_key
from make_retrieval.train.loop import train


def _seen_valid(data_dir: Path, seen: int) -> None:
    """Rewrite valid with ``seen`` training queries (written differently) and 4 unseen ones."""
    trained = [f"{colour.upper()}   {kind}" for colour in COLOURS for kind in TYPES][:seen]  # "RED   shirt"
    unseen = [f"{kind} in {colour}" for colour, kind in zip(COLOURS, TYPES, strict=True)]
    rows = [{"query": q, "product_id": "p000", "relevance": 1} for q in trained + unseen]
    write_table(data_dir / "valid.parquet", rows)


def test_queries_are_compared_by_their_terms() -> None:
    assert query_key("Red  Shirt") == query_key("shirt red") == query_key("shirt RED red")
    assert query_key("red shirt") != query_key("red shirts")


def test_a_partly_seen_valid_is_kept_with_a_warning(
    data_dir: Path, tmp_path: Path, tiny_config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    _seen_valid(data_dir, seen=3)
    data = load_data_dir(data_dir, ("train", "valid"))
    assert data.train is not None and count_seen(data.judgements["valid"], data.train) == 3
    train(tiny_config, data_dir, tmp_path / "run", progress=False)
    plan = json.loads((tmp_path / "run" / "validation.json").read_text())
    assert plan["source"] == "valid" and plan["valid_queries"] == 7 and plan["seen_in_train"] == 3
    assert "3 of 7 validation queries (43%) also occur in training" in capsys.readouterr().err


def test_a_mostly_seen_valid_is_replaced_by_held_out_training_queries(data_dir: Path) -> None:
    _seen_valid(data_dir, seen=16)  # 16 of 20
    data = load_data_dir(data_dir, ("train", "valid"))
    config = TrainConfig(holdout_share=0.25)
    planned, plan = plan_validation(data, config)
    assert plan.source == "holdout" and plan.seen_in_train == 16 and len(plan.held_out) == 5  # 25% of 20
    assert planned.train is not None and data.train is not None
    kept = {query_key(q) for q in planned.train.queries}
    assert not kept & {query_key(q) for q in plan.held_out}, "held-out queries must leave training"
    assert plan.held_out_clicks == len(data.train) - len(planned.train) > 0
    valid = planned.judgements["valid"]
    assert sorted(valid) == plan.held_out
    pairs = list(zip(data.train.queries, data.train.products, strict=True))
    for query, judged in valid.items():  # each held-out query's clicked products, relevant
        clicked = {data.catalog.product_ids[p] for q, p in pairs if q == query}
        assert judged == dict.fromkeys(clicked, 1)
    assert plan_validation(data, config)[1].held_out == plan.held_out, "the same seed holds out the same queries"
    assert plan_validation(data, TrainConfig(holdout_share=0.25, seed=1))[1].held_out != plan.held_out


def test_no_valid_split_validates_on_a_holdout_unless_switched_off(
    data_dir: Path, tmp_path: Path, tiny_config: Config
) -> None:
    (data_dir / "valid.parquet").unlink()
    result = train(tiny_config, data_dir, tmp_path / "run", progress=False)
    plan = json.loads((tmp_path / "run" / "validation.json").read_text())
    assert plan["source"] == "holdout" and len(plan["held_out"]) == 2  # 10% of 20 training queries
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert result.best is not None and summary["train_pairs"] == 64 - plan["held_out_clicks"]

    tiny_config.train.valid_holdout = False
    result = train(tiny_config, data_dir, tmp_path / "off", progress=False)
    plan = json.loads((tmp_path / "off" / "validation.json").read_text())
    assert plan["source"] == "none" and result.best is None
    assert json.loads((tmp_path / "off" / "train_summary.json").read_text())["train_pairs"] == 64


@pytest.mark.parametrize("validate", [True, False])
def test_sharded_clicks_are_never_split(data_dir: Path, validate: bool) -> None:
    shard_train(data_dir)
    planned, plan = plan_validation(load_data_dir(data_dir, ("train", "valid")), TrainConfig(validate=validate))
    assert plan.source == ("valid" if validate else "none") and not plan.held_out
    assert planned.judgements["valid"] == load_data_dir(data_dir, ("valid",)).judgements["valid"]
