"""Each model variant builds the computation it names, through the same MAKEModel and loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import make_batch, tiny_model_config
from make_retrieval.config import Config, LossConfig
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
    loss, logged = MAKELoss.for_config(config.model, LossConfig())(model, queries, products, batch.targets, kw)
    loss.backward()
    assert torch.isfinite(loss)
    assert ("query_image" in logged) == ("image" in modalities)
    assert ("query_title" in logged) == ("title" in modalities)
    assert ("keyword_product" in logged) == (name in {"make", "make-no-ma", "make-vit-scratch"})
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
