"""Modal Adaptation (MA): per-product weights b(p) and per-query weights a(q) over the modalities.

b(p) = softmax(MLP([title; image; fused])) and a(q) = softmax(MLP(query)); the score
sum_m sqrt(a_m(q) b_m(p)) <q_m, p_m> is one inner product of unit vectors [sqrt(a_m) q_m]_m and
[sqrt(b_m) p_m]_m, so the catalog is embedded once (docs/METHOD.md, Ours; model/make.py says why sqrt).
Modalities a product lacks (no image) get weight 0. With MA off the weights are uniform over the
available modalities: the "no MA" ablation.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ModalAdaptation(nn.Module):
    """Weights over ``num_modalities`` from a feature; uniform when ``enabled`` is False."""

    def __init__(
        self, in_dim: int, num_modalities: int, hidden: int, enabled: bool, prior: tuple[int, float] | None = None
    ):
        """``prior`` (modality, share): that modality starts with ``share`` of the weight for every
        input (the last layer's weights zero, its bias the prior's log-odds); None = a random start."""
        super().__init__()
        self.num_modalities = num_modalities
        self.enabled = enabled
        self.mlp = (
            nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, num_modalities)) if enabled else None
        )
        if self.mlp is not None and prior is not None and num_modalities > 1:
            modality, share = prior
            last = self.mlp[-1]
            rest = (1.0 - share) / (num_modalities - 1)
            with torch.no_grad():
                last.weight.zero_()
                last.bias.zero_()
                last.bias[modality] = math.log(share / rest)

    def forward(self, features: torch.Tensor, available: torch.Tensor | None = None) -> torch.Tensor:
        """features (B, in_dim), available (B, M) bool or None -> weights (B, M) summing to 1."""
        mlp = self.mlp
        logits = features.new_zeros(features.shape[0], self.num_modalities) if mlp is None else mlp(features)
        if available is not None:
            logits = logits.masked_fill(~available, float("-inf"))
        return torch.softmax(logits, dim=-1)
