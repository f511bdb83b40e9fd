"""Contrastive objectives: multi-positive InfoNCE and the MAKE pre-training loss built from it.

``positives[i, j] > 0`` makes column j a (weighted) positive of row i; ``excluded[i, j]`` removes a
column from row i's softmax (a false negative). Plain CLIP InfoNCE is the special case of an
identity ``positives`` and nothing excluded.
"""

from __future__ import annotations

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
    """Average of both retrieval directions (rows->columns and columns->rows) of a square batch
    whose row i and column i come from pair i, weighted by ``pair_weights``."""
    back = None if excluded is None else excluded.T
    return 0.5 * (
        multi_positive_info_nce(logits, positives, excluded, pair_weights)
        + multi_positive_info_nce(logits.T, positives.T, back, pair_weights)
    )


@dataclass
class Targets:
    """Who is whose positive in a batch of B (query, product) pairs; built by ``data.batches``."""

    positives: torch.Tensor  # (B, B) float: query i vs product j
    excluded: torch.Tensor  # (B, B) bool: product j is never a negative of query i
    same_product: torch.Tensor  # (B, B) float: product i is product j
    same_keywords: torch.Tensor  # (B, B) bool: products i and j have the same keyword string
    has_image: torch.Tensor  # (B,) bool
    weights: torch.Tensor  # (B,) float: click weight of pair i


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
        parts = {
            "query_product": (cfg.query_product, queries.vectors, products.vectors, pos, exc),
            "query_title": (cfg.query_title, queries.parts["title"], products.parts["title"], pos, exc),
            "query_image": (
                cfg.query_image,
                queries.parts["image"],
                products.parts["image"],
                pos.masked_fill(no_image, 0.0),
                exc | no_image,
            ),
            "title_image": (
                cfg.title_image,
                products.parts["title"],
                products.parts["image"],
                (targets.same_product * targets.has_image).masked_fill(no_image.unsqueeze(1), 0.0),
                no_image.unsqueeze(0) | no_image.unsqueeze(1),
            ),
        }
        if self.keyword_enhancement:
            if keywords is None:
                raise ValueError("keyword enhancement is on but the batch has no keyword pseudo-queries")
            same = targets.same_product
            # two products with the same keyword string are not each other's negatives
            twins = targets.same_keywords & (same <= 0)
            parts["keyword_product"] = (cfg.keyword_product, keywords.vectors, products.vectors, same, twins)
            parts["query_keyword"] = (cfg.query_keyword, queries.vectors, keywords.vectors, pos, exc)
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
