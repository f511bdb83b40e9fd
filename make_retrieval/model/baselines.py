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
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from make_retrieval.config import Config, ImageEncoderConfig
from make_retrieval.errors import ConfigError

_PLAIN = {"modal_adaptation": False, "keyword_enhancement": False}

VARIANTS: dict[str, dict[str, Any]] = {
    "make": {},
    "make-no-ma": {"modal_adaptation": False},
    "make-no-ke": {"keyword_enhancement": False},
    "text-dual": {**_PLAIN, "share_text_encoder": True, "image_modality": False, "fusion": False},
    "clip": {**_PLAIN, "share_text_encoder": True, "fusion": False},
    "fusion": {**_PLAIN, "title_modality": False, "image_modality": False},
    "make-vit-scratch": {
        "image_encoder": ImageEncoderConfig(
            backbone="vit", image_size=64, patch_size=8, hidden_size=192, num_layers=4, num_heads=3, trainable="all"
        )
    },
}
#: Training settings a variant needs besides its model switches.
TRAIN_SETTINGS: dict[str, dict[str, Any]] = {"make-vit-scratch": {"image_warmup_steps": 300}}


def with_variant(config: Config, name: str) -> Config:
    """A copy of ``config`` whose model switches (and training settings) are those of variant
    ``name``; the text towers' sizes are kept."""
    if name not in VARIANTS:
        raise ConfigError(f"unknown model '{name}'; choose one of {sorted(VARIANTS)}")
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, **copy.deepcopy(VARIANTS[name])),
        train=dataclasses.replace(config.train, **TRAIN_SETTINGS.get(name, {})),
    )
