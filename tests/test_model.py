"""The MAKE model: modality weights, the single-inner-product score, and each ablation switch."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import make_batch, tiny_model_config
from make_retrieval.config import LossConfig
from make_retrieval.data.batches import SimilarQueries
from make_retrieval.data.keywords import KeywordExtractor, tokenize
from make_retrieval.data.masks import QueryTerms
from make_retrieval.errors import ConfigError
from make_retrieval.losses import MAKELoss
from make_retrieval.model.make import MAKEModel

TITLES = ["Brand red shirt classic", "Brand blue heels", "Brand black watch steel", "Green handbag"]


def _products(model: MAKEModel, has_image: list[bool]):
    torch.manual_seed(1)
    pixels = torch.rand(len(has_image), 3, 16, 16) * 2 - 1
    return model.encode_products(TITLES[: len(has_image)], pixels, torch.tensor(has_image))


def _model(bert: Path, **switches: Any) -> MAKEModel:
    torch.manual_seed(0)
    return MAKEModel(tiny_model_config(bert, **switches)).eval()


def test_modal_adaptation_weights_sum_to_one_and_skip_missing_images(tiny_bert: Path) -> None:
    model = _model(tiny_bert, initial_title_weight=None)  # a random start: weights differ at once
    out = _products(model, [True, False, True, True])
    assert out.weights.shape == (4, 3)
    torch.testing.assert_close(out.weights.sum(1), torch.ones(4))
    assert out.weights[1, model.modalities.index("image")] == 0
    assert (out.weights[[0, 2, 3]] > 0).all()
    assert not torch.allclose(out.weights[0], out.weights[2]), "weights are per product"


def test_modal_adaptation_starts_on_the_title(tiny_bert: Path) -> None:
    model = _model(tiny_bert)  # initial_title_weight 0.9 by default
    with torch.no_grad():
        out = _products(model, [True, False])
        queries = model.encode_queries(["red shirt", "heels"])
    expected = torch.tensor([[0.9, 0.05, 0.05], [0.9 / 0.95, 0.0, 0.05 / 0.95]])
    torch.testing.assert_close(out.weights, expected)
    torch.testing.assert_close(queries.weights, expected[[0, 0]])


def test_the_text_width_gives_an_identity_start(tiny_bert: Path) -> None:
    model = _model(tiny_bert, embed_dim=None)
    width = model.title_encoder.hidden_size
    assert model.identity_start and model.dim == 3 * width
    with torch.no_grad():
        out = _products(model, [True, True])
        pooled = model.title_encoder(TITLES[:2], 16).pooled
        query = model.encode_queries(["red shirt"]).parts["title"]
        pooled_query = model.query_encoder(["red shirt"], 8).pooled
    torch.testing.assert_close(out.parts["title"], torch.nn.functional.normalize(pooled, dim=-1))
    torch.testing.assert_close(query, torch.nn.functional.normalize(pooled_query, dim=-1))
    assert not _model(tiny_bert).identity_start  # embed_dim 8 < the width: a random projection


def test_score_is_the_modal_adaptation_sum(tiny_bert: Path) -> None:
    model = _model(tiny_bert)
    with torch.no_grad():
        q = model.encode_queries(["red shirt"])
        p = _products(model, [True, True])
    manual = sum(
        (q.weights[0, i] * p.weights[:, i]).sqrt() * (p.parts[m] @ q.parts[m][0])
        for i, m in enumerate(model.modalities)
    )
    torch.testing.assert_close(p.vectors @ q.vectors[0], manual)
    # unit-norm vectors whatever the weights: concentrating them cannot widen the score range
    torch.testing.assert_close(p.vectors.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(q.vectors.norm(dim=1), torch.ones(1))


def test_no_modal_adaptation_gives_uniform_weights(tiny_bert: Path) -> None:
    model = _model(tiny_bert, modal_adaptation=False)
    out = _products(model, [True, False])
    torch.testing.assert_close(out.weights, torch.tensor([[1 / 3, 1 / 3, 1 / 3], [0.5, 0.0, 0.5]]))
    assert model.product_adaptation.mlp is None and model.query_adaptation.mlp is None


def test_no_fusion_drops_the_fused_modality(tiny_bert: Path) -> None:
    model = _model(tiny_bert, fusion=False)
    assert model.fusion is None and model.modalities == ("title", "image")
    out = _products(model, [True, True])
    assert out.vectors.shape == (2, 2 * model.config.embed_dim) and model.dim == 16


def test_a_product_without_image_ignores_its_pixels(tiny_bert: Path) -> None:
    model = _model(tiny_bert)
    no_image = torch.tensor([False, True])
    with torch.no_grad():
        a = model.encode_products(TITLES[:2], torch.zeros(2, 3, 16, 16), no_image)
        b = model.encode_products(TITLES[:2], torch.rand(2, 3, 16, 16), no_image)
    torch.testing.assert_close(a.vectors[0], b.vectors[0])
    torch.testing.assert_close(a.weights[0], b.weights[0])
    assert not torch.allclose(a.vectors[1], b.vectors[1])


def test_product_only_modal_adaptation(tiny_bert: Path) -> None:
    model = _model(tiny_bert, query_adaptation=False)
    assert model.query_adaptation.mlp is None and model.product_adaptation.mlp is not None
    torch.testing.assert_close(model.encode_queries(["red shirt"]).weights, torch.full((1, 3), 1 / 3))


def test_fusion_looks_at_the_image(tiny_bert: Path) -> None:
    model = _model(tiny_bert)
    titles = TITLES[:2]
    with torch.no_grad():
        a = model.encode_products(titles, torch.zeros(2, 3, 16, 16), torch.tensor([True, True]))
        b = model.encode_products(titles, torch.ones(2, 3, 16, 16), torch.tensor([True, True]))
    assert torch.allclose(a.parts["title"], b.parts["title"])
    assert not torch.allclose(a.parts["fused"], b.parts["fused"])


def test_keyword_enhancement_changes_masks_and_losses(tiny_bert: Path, data_dir: Path) -> None:
    plain, enhanced = make_batch(data_dir, False), make_batch(data_dir, True)
    # items: ("red shirt", p000), ("shirt", p000), ("red shirt", p001), ("shirt", p001), ...
    assert plain.targets.positives[0, 2] == 0 and plain.targets.excluded[0, 2], "same query: not a negative"
    assert enhanced.targets.positives[0, 2] == 1, "same query: a positive with KE"
    assert enhanced.targets.positives[1, 4] == 0  # 'shirt' vs 'red heels' share nothing
    assert enhanced.targets.positives[0, 1] == 1  # same product
    # subset rule: a 'red shirt' product fits 'shirt' (weight 1/2), a 'shirt' product need not be red
    assert enhanced.targets.positives[1, 2] == pytest.approx(0.5)
    assert enhanced.targets.positives[0, 3] == 0
    assert plain.targets.positives[0, 3] == 0
    # 'shirt' (item 1) is covered by the keywords of p001 (item 2): never its negative with KE
    assert enhanced.targets.excluded[1, 2] and not plain.targets.excluded[1, 2]
    assert enhanced.targets.weights.tolist() == [1.0] * 8
    symmetric = make_batch(data_dir, True, similar=SimilarQueries("jaccard"))
    assert symmetric.targets.positives[0, 3] == symmetric.targets.positives[1, 2] == pytest.approx(0.5)
    assert plain.keywords == [] and enhanced.keywords[0].split() == ["brand0", "red", "shirt", "classic"]

    torch.manual_seed(0)
    model = MAKEModel(tiny_model_config(tiny_bert))
    products = model.encode_products(enhanced.titles, enhanced.images, enhanced.targets.has_image)
    queries = model.encode_queries(enhanced.queries)
    keywords = model.encode_queries(enhanced.keywords)
    _, with_ke = MAKELoss.for_config(model.config, LossConfig())(model, queries, products, enhanced.targets, keywords)
    plain_config = dataclasses.replace(model.config, keyword_enhancement=False)
    _, without = MAKELoss.for_config(plain_config, LossConfig())(model, queries, products, plain.targets)
    assert {"keyword_product", "query_keyword"} <= set(with_ke) and "keyword_product" not in set(without)
    assert with_ke["query_product"] != pytest.approx(without["query_product"])
    with pytest.raises(ValueError, match="no keyword pseudo-queries"):
        MAKELoss.for_config(model.config, LossConfig())(model, queries, products, enhanced.targets)


def test_keywords_prefer_clicked_terms_and_fall_back_to_idf() -> None:
    titles = ["Acme Navy Blue Cotton Shirt", "Zeta Navy Cotton Trousers", "Acme Cotton Socks"]
    extractor = KeywordExtractor.fit(titles, [("blue shirt", 0), ("navy shirt", 0), ("shirt", 0)], num_keywords=2)
    # shirt: 3 clicks; blue and navy: 1 click each, blue is rarer in titles (higher IDF); title order kept
    assert extractor.keywords[0] == ["blue", "shirt"]
    assert extractor.keywords[1] == ["zeta", "trousers"]  # no clicks: rarest terms
    covered = QueryTerms.of([["blue", "shirt"], ["navy", "shirt"], []]).covered_by(extractor.keywords)
    assert covered[:, 0].tolist() == [True, False, False], "a query without terms is covered by nothing"


def test_tokenizer_splits_chinese_into_characters() -> None:
    assert tokenize("连衣裙 Red-Dress 2024") == ["连", "衣", "裙", "red", "dress", "2024"]


def test_image_backbone_from_a_local_folder_and_weights_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file
    from transformers import ViTConfig, ViTModel

    from make_retrieval.config import ImageEncoderConfig
    from make_retrieval.model.image import ImageEncoder

    pixels = torch.rand(2, 3, 16, 16)
    vit = ViTModel(
        ViTConfig(
            image_size=16,
            patch_size=8,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
        ),
        add_pooling_layer=False,
    ).eval()
    vit.save_pretrained(tmp_path / "vit")
    from_folder = ImageEncoder(ImageEncoderConfig(backbone=f"hf:{tmp_path / 'vit'}")).eval()
    assert from_folder.hidden_size == 16
    torch.testing.assert_close(from_folder(pixels).patches, vit(pixel_values=pixels).last_hidden_state)

    config = ImageEncoderConfig(backbone="vit", image_size=16, patch_size=8, hidden_size=16, num_layers=1, num_heads=2)
    save_file(vit.state_dict(), str(tmp_path / "vit.safetensors"))
    random_init = ImageEncoder(config).eval()
    loaded = ImageEncoder(
        ImageEncoderConfig(**{**config.__dict__, "weights": str(tmp_path / "vit.safetensors")})
    ).eval()
    torch.testing.assert_close(loaded(pixels).pooled, vit(pixel_values=pixels).last_hidden_state.mean(1))
    assert not torch.allclose(random_init(pixels).pooled, loaded(pixels).pooled)

    torch.save({"unrelated.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="shares no parameter names"):
        ImageEncoder(ImageEncoderConfig(**{**config.__dict__, "weights": str(tmp_path / "other.pt")}))
    with pytest.raises(ConfigError, match="unknown image backbone 'resnet'"):
        ImageEncoder(ImageEncoderConfig(backbone="resnet"))


def test_text_encoder_truncates_and_freezes_layers(tiny_bert: Path) -> None:
    from make_retrieval.config import TextEncoderConfig
    from make_retrieval.model.encoders import TextEncoder

    assert len(TextEncoder(TextEncoderConfig(path=str(tiny_bert), num_layers=1)).model.encoder.layer) == 1
    encoder = TextEncoder(TextEncoderConfig(path=str(tiny_bert), freeze_layers=1))
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("model.encoder.layer.1.") for n in trainable)
    with pytest.raises(FileNotFoundError, match=r"has no config\.json"):
        TextEncoder(TextEncoderConfig(path=str(tiny_bert / "absent")))


def test_similar_query_rules() -> None:
    subset, jaccard = SimilarQueries("subset"), SimilarQueries("jaccard")
    terms = QueryTerms.of([["men", "red", "shirt"], ["men", "blue", "shirt"], ["men", "shirt"]])  # red, blue, shirt
    assert jaccard.weights(terms)[0, 1] == pytest.approx(0.5) and subset.weights(terms)[0, 1] == 0
    assert subset.weights(terms)[2, 0] == pytest.approx(2 / 3) and subset.weights(terms)[0, 2] == 0
    assert SimilarQueries("subset", 0.7).weights(terms)[2, 0] == 0, "below the threshold"
    with pytest.raises(ConfigError, match="similar_query_rule"):
        SimilarQueries("cosine")
