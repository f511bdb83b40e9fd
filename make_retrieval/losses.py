"""Contrastive objectives: multi-positive InfoNCE and the MAKE pre-training loss built from it.

``positives[i, j] > 0`` makes column j a (weighted) positive of row i; ``excluded[i, j]`` removes a
column from row i's softmax (a false negative). Plain CLIP InfoNCE is the special case of an
identity ``positives`` and nothing excluded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from make_retrieval.config import LossConfig
from make_retrieval.model.make import Embedded, MAKEModel


def multi_positive_info_nce(
    logits: torch.Tensor,
    positives: torch.Tensor,
    excluded: torch.Tensor | None = None,
    row_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over rows with a positive of -sum_j w_ij log softmax_j(logits_i) / sum_j w_ij,
    weighted by ``row_weights`` (e.g. click weights) when given."""
    if excluded is not None:
        logits = logits.masked_fill(excluded & (positives <= 0), float("-inf"))
    log_prob = torch.log_softmax(logits, dim=-1)
    log_prob = torch.where(positives > 0, log_prob, torch.zeros_like(log_prob))
    total = positives.sum(-1)
    rows = total > 0
    if not rows.any():
        return logits.new_zeros(())
    per_row = -(positives * log_prob).sum(-1)[rows] / total[rows]
    if row_weights is None:
        return per_row.mean()
    weights = row_weights[rows]
    return (weights * per_row).sum() / weights.sum()


def symmetric_info_nce(
    logits: torch.Tensor,
    positives: torch.Tensor,
    excluded: torch.Tensor | None = None,
    pair_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Average of both retrieval directions (rows->columns and columns->rows), weighted by
    ``pair_weights``: row i and column i come from pair i; extra columns (hard negatives) weigh 1."""
    back = None if excluded is None else excluded.T
    rows, columns = (_padded(pair_weights, n) for n in logits.shape)
    return 0.5 * (
        multi_positive_info_nce(logits, positives, excluded, rows)
        + multi_positive_info_nce(logits.T, positives.T, back, columns)
    )


def _padded(weights: torch.Tensor | None, size: int) -> torch.Tensor | None:
    """Pair weights extended with 1 for the extra (hard-negative) rows or columns."""
    if weights is None or len(weights) >= size:
        return weights
    return torch.cat([weights, weights.new_ones(size - len(weights))])


@dataclass
class Targets:
    """Who is whose positive in a batch of B (query, product) pairs whose product side has C >= B
    columns (the clicked products, then mined hard negatives); built by ``data.batches``."""

    positives: torch.Tensor  # (B, C) float: query i vs product column j
    excluded: torch.Tensor  # (B, C) bool: product j is never a negative of query i
    same_product: torch.Tensor  # (C, C) float: column i and column j are the same product
    same_keywords: torch.Tensor  # (B, C) bool: product i and column j have the same keyword string
    has_image: torch.Tensor  # (C,) bool
    weights: torch.Tensor  # (B,) float: click weight of pair i

    def to(self, device: torch.device) -> Targets:
        """The same masks on ``device``."""
        return Targets(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})


class MAKELoss(nn.Module):
    """Weighted sum of the objectives of METHOD.md; returns the total and each part (for logging)."""

    def __init__(self, config: LossConfig, keyword_enhancement: bool):
        super().__init__()
        self.config = config
        self.keyword_enhancement = keyword_enhancement

    def forward(
        self,
        model: MAKEModel,
        queries: Embedded,
        products: Embedded,
        targets: Targets,
        keywords: Embedded | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss (for backward) and each objective's value (for the metrics log)."""
        cfg = self.config
        pos, exc = targets.positives, targets.excluded
        no_image = ~targets.has_image
        image_pairs = no_image.unsqueeze(0) | no_image.unsqueeze(1)
        parts = {"query_product": (cfg.query_product, queries.vectors, products.vectors, pos, exc)}
        # the per-modality objectives exist only for the modalities this model has
        if "title" in products.parts:
            parts["query_title"] = (cfg.query_title, queries.parts["title"], products.parts["title"], pos, exc)
        if "image" in products.parts:
            q, p = queries.parts["image"], products.parts["image"]
            parts["query_image"] = (cfg.query_image, q, p, pos.masked_fill(no_image, 0.0), exc | no_image)
        if "title" in products.parts and "image" in products.parts:
            same_seen = targets.same_product.masked_fill(image_pairs, 0.0)
            title, image = products.parts["title"], products.parts["image"]
            parts["title_image"] = (cfg.title_image, title, image, same_seen, image_pairs)
        if self.keyword_enhancement:
            if keywords is None:
                raise ValueError("keyword enhancement is on but the batch has no keyword pseudo-queries")
            size = len(keywords.vectors)
            same = targets.same_product[:size]
            # two products with the same keyword string are not each other's negatives
            twins = targets.same_keywords & (same <= 0)
            parts["keyword_product"] = (cfg.keyword_product, keywords.vectors, products.vectors, same, twins)
            kw_pos, kw_exc = pos[:, :size], exc[:, :size]
            parts["query_keyword"] = (cfg.query_keyword, queries.vectors, keywords.vectors, kw_pos, kw_exc)
        total = queries.vectors.new_zeros(())
        logged: dict[str, float] = {}
        for name, (weight, left, right, positives, excluded) in parts.items():
            if weight == 0:
                continue
            logits = model.logit_scale(name) * left @ right.T
            value = symmetric_info_nce(logits, positives, excluded, targets.weights)
            total = total + weight * value
            logged[name] = float(value.detach())
        logged["loss"] = float(total.detach())
        return total, logged
