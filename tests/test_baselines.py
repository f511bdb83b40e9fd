"""Each model variant builds the computation it names, through the same MAKEModel and loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import make_batch, tiny_model_config
from make_retrieval.config import Config
from make_retrieval.errors import ConfigError
from make_retrieval.losses import MAKELoss
from make_retrieval.model.baselines import VARIANTS, with_variant
from make_retrieval.model.make import MAKEModel

EXPECTED = {
    "make": (("title", "image", "fused"), False, True),
    "make-no-ma": (("title", "image", "fused"), False, True),
    "make-no-ke": (("title", "image", "fused"), False, True),
    "text-dual": (("title",), True, False),
    "clip": (("title", "image"), True, True),
    "fusion": (("fused",), False, True),
    "make-vit-scratch": (("title", "image", "fused"), False, True),
    "zero-shot": (("title",), True, False),
    "mnrl-1": (("title",), True, False),
    "mnrl-5": (("title",), True, False),
    "frozen-probe": (("title", "image", "fused"), False, True),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_builds_and_trains_one_step(name: str, tiny_bert: Path, data_dir: Path) -> None:
    config = with_variant(Config(model=tiny_model_config(tiny_bert)), name)
    torch.manual_seed(0)
    model = MAKEModel(config.model)
    modalities, shared, has_image_tower = EXPECTED[name]
    assert model.modalities == modalities
    assert (model.title_encoder is model.query_encoder) == shared
    assert (model.image_encoder is not None) == has_image_tower
    assert (model.product_adaptation.mlp is not None) == config.model.modal_adaptation

    batch = make_batch(data_dir, config.model.keyword_enhancement, image_size=model.image_size)
    products = model.encode_products(batch.titles, batch.images, batch.targets.has_image)
    queries = model.encode_queries(batch.queries)
    kw = model.encode_queries(batch.keywords) if batch.keywords else None
    loss, logged = MAKELoss.for_config(config.model, config.loss)(model, queries, products, batch.targets, kw)
    loss.backward()
    assert torch.isfinite(loss)
    assert ("query_image" in logged) == ("image" in modalities)
    assert ("query_title" in logged) == ("title" in modalities and not name.startswith("mnrl"))
    assert ("keyword_product" in logged) == (name in {"make", "make-no-ma", "make-vit-scratch", "frozen-probe"})
    if name == "clip":  # product = mean of title and image
        torch.testing.assert_close(products.weights, torch.full((8, 2), 0.5))
    if name == "make-vit-scratch":  # a random ViT that trains, warmed up first
        assert config.model.image_encoder.backbone == "vit" and config.train.image_warmup_steps == 300
        assert model.image_encoder is not None and not model.image_encoder.frozen
        assert model.image_encoder.backbone.embeddings.patch_embeddings.projection.weight.grad is not None


def test_shared_text_tower_is_one_set_of_parameters(tiny_bert: Path) -> None:
    separate = MAKEModel(tiny_model_config(tiny_bert, image_modality=False, fusion=False))
    shared = MAKEModel(tiny_model_config(tiny_bert, image_modality=False, fusion=False, share_text_encoder=True))
    count = sum(p.numel() for p in separate.query_encoder.parameters())
    assert sum(p.numel() for p in separate.parameters()) - sum(p.numel() for p in shared.parameters()) == count


def test_unknown_variant_and_image_only_model(tiny_bert: Path) -> None:
    with pytest.raises(ConfigError, match="unknown model 'albef'"):
        with_variant(Config(), "albef")
    with pytest.raises(ConfigError, match="needs its title or fused modality"):
        MAKEModel(tiny_model_config(tiny_bert, title_modality=False, fusion=False))


def test_zero_shot_is_the_pretrained_encoder_untrained(tiny_bert: Path) -> None:
    config = with_variant(Config(model=tiny_model_config(tiny_bert)), "zero-shot")
    assert config.train.max_steps == 0 and not config.train.validate
    model = MAKEModel(config.model).eval()
    queries = ["red shirt", "blue jeans for men"]
    with torch.no_grad():
        pooled = model.query_encoder(queries, config.model.query_encoder.max_length).pooled
        vectors = model.encode_queries(queries).vectors
    # the index vector is the tower's own mean-pooled feature, normalised: cosine of the encoder
    torch.testing.assert_close(vectors, torch.nn.functional.normalize(pooled, dim=-1))


def test_mnrl_is_one_objective_and_the_frozen_probe_trains_no_tower(tiny_bert: Path, data_dir: Path) -> None:
    mnrl = with_variant(Config(model=tiny_model_config(tiny_bert)), "mnrl-5")
    assert [o.name for o in MAKELoss.for_config(mnrl.model, mnrl.loss).objectives] == ["query_product"]
    assert mnrl.train.epochs == 5 and mnrl.train.lr == 2e-5 and not mnrl.train.validate

    probe = with_variant(Config(model=tiny_model_config(tiny_bert)), "frozen-probe")
    assert probe.model.title_encoder.max_length == 16  # the tower's other settings are kept
    model = MAKEModel(probe.model).train()
    towers = [model.query_encoder, model.title_encoder]
    assert all(t.frozen and not t.model.training for t in towers)  # frozen towers run without dropout
    batch = make_batch(data_dir, True, image_size=model.image_size)
    products = model.encode_products(batch.titles, batch.images, batch.targets.has_image)
    queries, kw = model.encode_queries(batch.queries), model.encode_queries(batch.keywords)
    loss, _ = MAKELoss.for_config(probe.model, probe.loss)(model, queries, products, batch.targets, kw)
    loss.backward()
    assert all(p.grad is None for t in towers for p in t.parameters())
    assert model.product_proj["title"].weight.grad is not None and model.fusion is not None
    assert any(p.grad is not None for p in model.fusion.parameters())


def test_a_frozen_tower_encodes_each_text_once_while_training(tiny_bert: Path, monkeypatch) -> None:
    probe = with_variant(Config(model=tiny_model_config(tiny_bert)), "frozen-probe")
    tower = MAKEModel(probe.model).train().title_encoder
    texts = ["Brand red shirt classic", "Brand blue heels", "Green handbag with a long strap"]
    with torch.no_grad():
        direct = tower.encode(*tower.tokenize(texts, 16))
    calls: list[int] = []
    encode = tower.encode
    monkeypatch.setattr(tower, "encode", lambda ids, mask: calls.append(len(ids)) or encode(ids, mask))
    first = tower(texts[:2], 16)
    again = tower(texts, 16)  # two texts known, one new
    assert calls == [2, 1]
    torch.testing.assert_close(again.pooled, direct.pooled)
    torch.testing.assert_close(again.mask, direct.mask.bool())
    torch.testing.assert_close(again.tokens * again.mask[..., None], direct.tokens * direct.mask[..., None],
                               atol=2e-3, rtol=2e-3)  # token states are kept in fp16
    torch.testing.assert_close(first.pooled, direct.pooled[:2])
