"""The contrastive pre-training objectives of docs/METHOD.md, as data: each one names the two sides it
contrasts and the masks that say, per batch, which pairs are positives and which are excluded.

Adding an objective is one ``Objective`` entry here plus its weight (a ``LossConfig`` field of the
same name, where every tunable lives). The model keeps a learnable temperature for each objective
it trains (``MAKEModel.logit_scales``); ``losses.MAKELoss`` computes the weighted sum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from make_retrieval.config import LossConfig, ModelConfig
from make_retrieval.data.batches import Targets

#: Rows an objective can contrast: the batch's queries, its keyword pseudo-queries (KE) or its products.
ROWS = ("queries", "keywords", "products")

#: targets -> (positives, excluded), as ``losses.multi_positive_info_nce`` reads them; where each block
#: of rows and columns sits comes from ``targets.layout`` (data/batches.py BatchLayout).
Masks = Callable[[Targets], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Side:
    """One side of an objective: ``rows`` (one of ROWS) and the vector used: the index vector
    (``part`` None) or one modality's normalised vector (``part`` "title", "image" or "fused")."""

    rows: str
    part: str | None = None


@dataclass(frozen=True)
class Objective:
    """A symmetric InfoNCE between ``left`` and ``right`` with ``masks``; ``name`` is also the key of
    its weight in LossConfig and of its temperature in the model."""

    name: str
    left: Side
    right: Side
    masks: Masks

    def available(self, modalities: Sequence[str], keyword_enhancement: bool) -> bool:
        """Whether a model with these product modalities (and KE on or off) has both sides."""
        sides = (self.left, self.right)
        if any(side.rows == "keywords" for side in sides) and not keyword_enhancement:
            return False
        return all(side.part is None or side.part in modalities for side in sides)


def _clicks(targets: Targets) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries against their products: the batch's click masks."""
    return targets.positives, targets.excluded


def _clicks_with_image(targets: Targets) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries against product images: a product without an image is neither positive nor negative."""
    no_image = ~targets.has_image
    return targets.positives.masked_fill(no_image, 0.0), targets.excluded | no_image


def _same_product_with_images(targets: Targets) -> tuple[torch.Tensor, torch.Tensor]:
    """Titles against images of the same product; pairs where either has no image are left out."""
    no_image = ~targets.has_image
    image_pairs = no_image.unsqueeze(0) | no_image.unsqueeze(1)
    return targets.same_product.masked_fill(image_pairs, 0.0), image_pairs


def _keywords_to_products(targets: Targets) -> tuple[torch.Tensor, torch.Tensor]:
    """Keyword pseudo-queries against products: two products with the same keyword string are not
    each other's negatives."""
    same = targets.same_product[targets.layout.clicked]
    return same, targets.same_keywords & (same <= 0)


def _queries_to_keywords(targets: Targets) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries against their products' keyword pseudo-queries: the click masks, keyword columns only."""
    clicked = targets.layout.clicked
    return targets.positives[:, clicked], targets.excluded[:, clicked]


#: In the order their losses are summed (which fixes the floating-point result of a seed).
OBJECTIVES: tuple[Objective, ...] = (
    Objective("query_product", Side("queries"), Side("products"), _clicks),
    Objective("query_title", Side("queries", "title"), Side("products", "title"), _clicks),
    Objective("query_image", Side("queries", "image"), Side("products", "image"), _clicks_with_image),
    Objective("title_image", Side("products", "title"), Side("products", "image"), _same_product_with_images),
    Objective("keyword_product", Side("keywords"), Side("products"), _keywords_to_products),
    Objective("query_keyword", Side("queries"), Side("keywords"), _queries_to_keywords),
)


def model_objectives(model: ModelConfig) -> tuple[Objective, ...]:
    """The objectives a model of this config can train (it has both sides of each)."""
    return tuple(o for o in OBJECTIVES if o.available(model.modalities, model.keyword_enhancement))


def enabled_objectives(model: ModelConfig, loss: LossConfig) -> tuple[Objective, ...]:
    """The objectives a run trains: those the model can, with a non-zero weight."""
    return tuple(o for o in model_objectives(model) if getattr(loss, o.name) != 0)
