"""Contrastive objectives: multi-positive InfoNCE and the MAKE pre-training loss built from it.

``positives[i, j] > 0`` makes column j a (weighted) positive of row i; ``excluded[i, j]`` removes a
column from row i's softmax (a false negative). Plain CLIP InfoNCE is the special case of an
identity ``positives`` and nothing excluded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from make_retrieval.config import LossConfig, ModelConfig
from make_retrieval.data.batches import Targets
from make_retrieval.model.make import Embedded, MAKEModel
from make_retrieval.model.objectives import Objective, Side, enabled_objectives


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
    row_weights: torch.Tensor | None = None,
    column_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Average of both retrieval directions (rows->columns and columns->rows), each direction's
    anchors weighted by their own weights (e.g. click weights; data/batches.py Targets.side_weights)."""
    back = None if excluded is None else excluded.T
    return 0.5 * (
        multi_positive_info_nce(logits, positives, excluded, row_weights)
        + multi_positive_info_nce(logits.T, positives.T, back, column_weights)
    )


class MAKELoss(nn.Module):
    """Weighted sum of the contrastive objectives (model/objectives.py); returns the total and each
    objective's value (for logging)."""

    def __init__(self, weights: LossConfig, objectives: Sequence[Objective]):
        super().__init__()
        self.weights, self.objectives = weights, tuple(objectives)

    @classmethod
    def for_config(cls, model: ModelConfig, loss: LossConfig) -> MAKELoss:
        """The loss of a run: every objective the model can train that has a non-zero weight."""
        return cls(loss, enabled_objectives(model, loss))

    def forward(
        self,
        model: MAKEModel,
        queries: Embedded,
        products: Embedded,
        targets: Targets,
        keywords: Embedded | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss (for backward) and each objective's value (for the metrics log)."""
        rows = {"queries": queries, "keywords": keywords, "products": products}
        total = queries.vectors.new_zeros(())
        logged: dict[str, float] = {}
        for objective in self.objectives:
            left, right = _side(rows, objective.left), _side(rows, objective.right)
            positives, excluded = objective.masks(targets)
            logits = model.logit_scale(objective.name) * left @ right.T
            weights = targets.side_weights(objective.left.rows), targets.side_weights(objective.right.rows)
            value = symmetric_info_nce(logits, positives, excluded, *weights)
            total = total + getattr(self.weights, objective.name) * value
            logged[objective.name] = float(value.detach())
        logged["loss"] = float(total.detach())
        return total, logged


def _side(rows: dict[str, Embedded | None], side: Side) -> torch.Tensor:
    """The vectors of one side of an objective."""
    embedded = rows[side.rows]
    if embedded is None:
        raise ValueError("keyword enhancement is on but the batch has no keyword pseudo-queries")
    return embedded.vectors if side.part is None else embedded.parts[side.part]
