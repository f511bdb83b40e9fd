"""Hybrid search: one ranked list from the dense (MAKE) and the lexical (BM25) channels.

Each channel proposes its top ``max(k, depth)`` products; every product either proposed is scored
by *both* channels exactly (its inner product with the query, its BM25 score), so a product one
channel missed is not guessed at. Two ways to fuse:

- ``weighted``: ``dense + lexical_weight * bm25 / best_bm25``. MAKE's vectors are unit-norm, so the
  inner product is a cosine on the same scale for every query; BM25's scale grows with the query's
  length and rarity, so it is divided by the query's best BM25 score (the top lexical hit, always a
  candidate: the normalisation does not depend on ``depth``). ``lexical_weight`` 0 is the dense
  ranking; it is chosen on the validation split by ``embed`` (``hybrid.choose_fusion``).
- ``rrf``: reciprocal rank fusion, ``sum over channels of 1 / (rrf_k + rank)`` (rrf_k 60, as in
  Cormack et al. 2009): needs no scores and no weight, so it is what an index gets when there is no
  validation split to choose a weight on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from make_retrieval.index.store import Hit

FUSIONS = ("weighted", "rrf")
CHANNELS = ("dense", "lexical")


@dataclass
class Fusion:
    """How an index fuses its channels (kept in its manifest under ``hybrid``)."""

    method: str = "rrf"
    #: ``weighted``: how much the normalised BM25 score counts beside the cosine.
    lexical_weight: float = 0.0
    rrf_k: int = 60
    #: Candidates each channel proposes: ``max(k, depth)``.
    depth: int = 100
    #: How the setting was made: "valid" (chosen there), "option" (set by the user) or "default".
    chosen_on: str = "default"
    #: Validation figures of each setting tried, when chosen on valid.
    tried: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Fusion:
        return cls(**raw)

    def describe(self) -> str:
        """One line for a command's output."""
        how = {"valid": "chosen on valid", "option": "set by option", "default": "no valid split to choose on"}
        if self.method == "rrf":
            return f"reciprocal rank fusion (k={self.rrf_k}; {how[self.chosen_on]})"
        return f"dense + {self.lexical_weight:g} x normalised BM25 ({how[self.chosen_on]})"


@dataclass
class Candidates:
    """One query's products proposed by either channel, with both channels' exact scores and the rank
    (1 = first, 0 = not proposed) each channel gave it."""

    product_ids: list[str]
    dense: np.ndarray
    lexical: np.ndarray
    dense_rank: np.ndarray
    lexical_rank: np.ndarray

    @classmethod
    def union(cls, dense: list[Hit], lexical: list[Hit]) -> Candidates:
        """The proposed ids (dense's order, then lexical-only ones) with their ranks; scores unset."""
        ids = list(dict.fromkeys([h.product_id for h in dense] + [h.product_id for h in lexical]))
        position = {pid: i for i, pid in enumerate(ids)}
        ranks = [np.zeros(len(ids), dtype=np.int64) for _ in CHANNELS]
        for rank, hits in zip(ranks, (dense, lexical), strict=True):
            rank[[position[h.product_id] for h in hits]] = np.arange(1, len(hits) + 1)
        empty = np.zeros(len(ids), dtype=np.float32)
        return cls(ids, empty, empty.copy(), ranks[0], ranks[1])


def fused_scores(candidates: Candidates, fusion: Fusion) -> np.ndarray:
    """Each candidate's fused score under ``fusion``."""
    c = candidates
    if fusion.method == "rrf":
        scores = np.zeros(len(c.product_ids))
        for rank in (c.dense_rank, c.lexical_rank):
            found = rank > 0
            scores[found] += 1.0 / (fusion.rrf_k + rank[found])
        return scores
    best = float(c.lexical.max(initial=0.0))
    lexical = c.lexical / best if best > 0 else np.zeros_like(c.lexical)
    return c.dense.astype(np.float64) + fusion.lexical_weight * lexical


def fuse(candidates: Candidates, fusion: Fusion, k: int) -> list[Hit]:
    """The top ``k`` candidates by fused score, each hit saying which channels proposed it and at
    which rank (``Hit.channels``)."""
    scores = fused_scores(candidates, fusion)
    order = np.argsort(-scores, kind="stable")[:k]
    c = candidates
    return [
        Hit(
            c.product_ids[i],
            float(scores[i]),
            {
                name: int(rank[i])
                for name, rank in zip(CHANNELS, (c.dense_rank, c.lexical_rank), strict=True)
                if rank[i]
            },
        )
        for i in order
    ]
