"""Named model variants: MAKE, its ablations, and the baselines it is compared with, all built by the
same MAKEModel, trained by the same loop and evaluated by the same code (only switches differ).

- ``make``: query, title and image towers, fusion, Modal Adaptation, Keyword Enhancement.
- ``make-no-ma``: uniform modality weights. ``make-no-ke``: no keyword losses or keyword masks.
- ``text-dual``: one shared text tower for query and title, no image.
- ``clip``: CLIP-style dual encoder; one text tower, query vs title and query vs image, product =
  mean of the two (uniform weights), no fusion.
- ``fusion``: ALBEF-style fused title+image product tower (the product is its fused feature),
  separate query tower, no MA or KE.
- ``make-vit-scratch``: MAKE with the image tower trained from scratch (a random 4-layer ViT on
  64-px pictures, warmed up against the title tower first, our default before pretrained weights):
  the row that measures what the pretrained image backbone brings.

The anchors, what a user would pick instead of training MAKE (issue 21):
- ``zero-shot``: the pretrained text encoder as it is (one shared tower, mean-pooled, cosine), not
  trained at all: the identity projection and no step.
- ``mnrl-1`` / ``mnrl-5``: a sentence-transformers-style fine-tune of that encoder for 1 / 5 epochs:
  one shared tower, MultipleNegativesRankingLoss (InfoNCE over in-batch negatives at scale 20, here
  in both directions), lr 2e-5, the last epoch's model (no validation).
- ``frozen-probe``: MAKE with both text towers and the image trunk frozen (features fixed), only the
  heads, fusion and Modal Adaptation trained: a linear probe on frozen features.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from make_retrieval.config import Config, ImageEncoderConfig
from make_retrieval.errors import ConfigError

_PLAIN = {"modal_adaptation": False, "keyword_enhancement": False}
_TEXT = {**_PLAIN, "share_text_encoder": True, "image_modality": False, "fusion": False}
#: The pretrained text encoder's own space: one tower, the identity projection (embed_dim = its width).
_PRETRAINED_TEXT = {**_TEXT, "embed_dim": None}

VARIANTS: dict[str, dict[str, Any]] = {
    "make": {},
    "make-no-ma": {"modal_adaptation": False},
    "make-no-ke": {"keyword_enhancement": False},
    "text-dual": _TEXT,
    "clip": {**_PLAIN, "share_text_encoder": True, "fusion": False},
    "fusion": {**_PLAIN, "title_modality": False, "image_modality": False},
    "make-vit-scratch": {
        "image_encoder": ImageEncoderConfig(
            backbone="vit", image_size=64, patch_size=8, hidden_size=192, num_layers=4, num_heads=3, trainable="all"
        )
    },
    "zero-shot": _PRETRAINED_TEXT,
    "mnrl-1": _PRETRAINED_TEXT,
    "mnrl-5": _PRETRAINED_TEXT,
    "frozen-probe": {},
}
_ST_FIT = {"max_steps": None, "lr": 2e-5, "validate": False}
#: Training settings a variant needs besides its model switches.
TRAIN_SETTINGS: dict[str, dict[str, Any]] = {
    "make-vit-scratch": {"image_warmup_steps": 300},
    "zero-shot": {"max_steps": 0, "validate": False},
    "mnrl-1": {**_ST_FIT, "epochs": 1},
    "mnrl-5": {**_ST_FIT, "epochs": 5},
}
#: Loss weights a variant sets: MNRL is the query-product objective alone.
_MNRL = {"query_title": 0.0, "query_image": 0.0, "title_image": 0.0, "keyword_product": 0.0, "query_keyword": 0.0}
LOSS_SETTINGS: dict[str, dict[str, Any]] = {"mnrl-1": _MNRL, "mnrl-5": _MNRL}
#: Text-tower settings a variant sets on both towers (their other settings, e.g. lengths, are kept).
TOWER_SETTINGS: dict[str, dict[str, Any]] = {"frozen-probe": {"freeze_layers": -1}}


def with_variant(config: Config, name: str) -> Config:
    """A copy of ``config`` whose model switches (and training settings) are those of variant
    ``name``; the text towers' sizes are kept."""
    if name not in VARIANTS:
        raise ConfigError(f"unknown model '{name}'; choose one of {sorted(VARIANTS)}")
    model = dataclasses.replace(config.model, **copy.deepcopy(VARIANTS[name]))
    towers = TOWER_SETTINGS.get(name, {})
    model.query_encoder = dataclasses.replace(model.query_encoder, **towers)
    model.title_encoder = dataclasses.replace(model.title_encoder, **towers)
    return dataclasses.replace(
        config,
        model=model,
        loss=dataclasses.replace(config.loss, **LOSS_SETTINGS.get(name, {})),
        train=dataclasses.replace(config.train, **TRAIN_SETTINGS.get(name, {})),
    )
