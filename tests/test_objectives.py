"""The objectives as data: which run for which model, their temperatures, checkpoints from before."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from helpers import make_batch, tiny_model_config
from make_retrieval.config import Config, LossConfig
from make_retrieval.losses import MAKELoss
from make_retrieval.model.baselines import with_variant
from make_retrieval.model.make import MAKEModel
from make_retrieval.model.objectives import OBJECTIVES, enabled_objectives, model_objectives

ALL = [o.name for o in OBJECTIVES]


def test_every_objective_has_a_weight_and_every_weight_an_objective() -> None:
    weights = {f.name for f in dataclasses.fields(LossConfig) if isinstance(f.default, float)}
    assert set(ALL) == weights - {"init_temperature", "similar_query_threshold"}


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("make", ALL),
        ("make-no-ke", ["query_product", "query_title", "query_image", "title_image"]),
        ("text-dual", ["query_product", "query_title"]),
        ("fusion", ["query_product"]),
        ("clip", ["query_product", "query_title", "query_image", "title_image"]),
    ],
)
def test_objectives_follow_the_model(tiny_bert: Path, variant: str, expected: list[str]) -> None:
    config = with_variant(Config(model=tiny_model_config(tiny_bert)), variant)
    assert [o.name for o in model_objectives(config.model)] == expected
    model = MAKEModel(config.model)
    assert sorted(model.logit_scales) == sorted(expected), "a temperature only for an objective the model trains"


def test_a_zero_weight_switches_an_objective_off(tiny_bert: Path, data_dir: Path) -> None:
    config = Config(model=tiny_model_config(tiny_bert), loss=LossConfig(title_image=0.0, query_keyword=0.0))
    names = [o.name for o in enabled_objectives(config.model, config.loss)]
    assert names == ["query_product", "query_title", "query_image", "keyword_product"]
    torch.manual_seed(0)
    model = MAKEModel(config.model, objectives=names)
    batch = make_batch(data_dir, True)
    products = model.encode_products(batch.titles, batch.images, batch.targets.has_image)
    queries, keywords = model.encode_queries(batch.queries), model.encode_queries(batch.keywords)
    loss, logged = MAKELoss.for_config(config.model, config.loss)(model, queries, products, batch.targets, keywords)
    assert set(logged) == {*names, "loss"}
    expected = sum(getattr(config.loss, name) * logged[name] for name in names)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
