"""Pretrained towers from local folders, the way users bring them: a CLIPModel folder for the title
and image towers, any Hugging Face text encoder for the query. Tiny random models saved with
``save_pretrained``: nothing is downloaded."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import torch
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

from helpers import tiny_model_config
from make_retrieval.config import ImageEncoderConfig, TextEncoderConfig
from make_retrieval.model.encoders import TextEncoder
from make_retrieval.model.image import ImageEncoder
from make_retrieval.model.make import MAKEModel

#: Trains models, loads real weights or starts processes: deselect with -m 'not slow' for a quick run.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CLIPModel]:
    """A 2-layer random CLIP with a character-level BPE vocabulary, saved as a CLIPModel folder."""
    folder = tmp_path_factory.mktemp("tiny-clip")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in string.ascii_lowercase + string.digits:
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    text = {"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    text |= {"num_attention_heads": 2, "max_position_embeddings": 64, "bos_token_id": 0, "eos_token_id": 1}
    vision = {"hidden_size": 24, "intermediate_size": 48, "num_hidden_layers": 1, "num_attention_heads": 2}
    vision |= {"image_size": 16, "patch_size": 8}
    torch.manual_seed(0)
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    clip.save_pretrained(folder / "clip")
    tokenizer.save_pretrained(folder / "clip")
    return folder / "clip", clip


def test_clip_folder_gives_the_title_tower_its_text_half(tiny_clip: tuple[Path, CLIPModel]) -> None:
    folder, clip = tiny_clip
    tower = TextEncoder(TextEncoderConfig(path=str(folder), freeze_layers=1))
    assert tower.hidden_size == 32
    torch.testing.assert_close(
        tower.model.embeddings.token_embedding.weight, clip.text_model.embeddings.token_embedding.weight
    )
    out = tower(["red heels", "blue watch 2"])
    assert out.tokens.shape[0] == 2 and out.pooled.shape == (2, 32)
    assert not tower.model.encoder.layers[0].mlp.fc1.weight.requires_grad
    assert tower.model.encoder.layers[1].mlp.fc1.weight.requires_grad


def test_clip_folder_gives_the_image_tower_its_vision_half(tiny_clip: tuple[Path, CLIPModel]) -> None:
    folder, clip = tiny_clip
    tower = ImageEncoder(ImageEncoderConfig(backbone=f"hf:{folder}", image_size=64)).eval()
    assert tower.image_size == 16, "a pretrained ViT reads the size it was trained on"
    assert tower.hidden_size == 24
    pixels = torch.rand(2, 3, 16, 16)
    expected = clip.vision_model(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(tower(pixels).patches, expected)


def test_make_with_clip_title_and_image_and_bert_query(tiny_clip: tuple[Path, CLIPModel], tiny_bert: Path) -> None:
    folder, _ = tiny_clip
    config = tiny_model_config(tiny_bert)
    config.title_encoder = TextEncoderConfig(path=str(folder), max_length=16)
    config.image_encoder = ImageEncoderConfig(backbone=f"hf:{folder}")
    model = MAKEModel(config)
    assert type(model.title_encoder.model).__name__ == "CLIPTextModel"
    assert type(model.query_encoder.model).__name__ == "BertModel"
    products = model.encode_products(["red heels", "blue watch"], torch.rand(2, 3, 16, 16), torch.tensor([True, True]))
    queries = model.encode_queries(["red heels"])
    (queries.vectors @ products.vectors.T).sum().backward()
    assert model.image_encoder is not None
    assert model.image_encoder.backbone.embeddings.patch_embedding.weight.grad is not None


def test_missing_image_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"has no config\.json"):
        ImageEncoder(ImageEncoderConfig(backbone=f"hf:{tmp_path}"))
