"""The term comparisons behind a training batch's masks, as tensor operations (issue 22).

Each query's distinct terms are a row of a sparse incidence matrix over the batch's own query
vocabulary. "How many of query a's terms does set b hold" is then one sparse-dense product for the
whole batch, from which follow the similar-query weights of Keyword Enhancement (subset or Jaccard)
and whether a product's keywords cover a query; equal strings become equal integer ids. The Python
work grows with the batch (tokenising B queries, listing C products' keywords), the pairwise work
runs in torch's kernels: a global batch of 4,096 collates in a fraction of a second
(docs/BENCHMARKS.md, "Collate"), where the loops over every pair took minutes.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

H = TypeVar("H", bound=Hashable)


def distinct(values: Iterable[H]) -> tuple[list[H], torch.Tensor]:
    """The distinct values in first-seen order, and each value's position among them: equal values,
    equal ids. A batch's pairwise work is done once per distinct value and expanded by the ids."""
    ids: dict[H, int] = {}
    positions = torch.tensor([ids.setdefault(value, len(ids)) for value in values], dtype=torch.long)
    return list(ids), positions


def equal(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """(R, C) bool: row id i equals column id j."""
    return rows.unsqueeze(1) == columns.unsqueeze(0)


@dataclass
class QueryTerms:
    """The distinct terms of B queries: a sparse (B, V) 0/1 incidence over their vocabulary of V terms."""

    #: each query's terms, as given
    queries: Sequence[Iterable[str]]
    vocabulary: dict[str, int]
    incidence: torch.Tensor
    #: (B,) distinct terms per query
    sizes: torch.Tensor

    @classmethod
    def of(cls, queries: Sequence[Iterable[str]]) -> QueryTerms:
        """Incidence of each query's terms (a term repeated in a query counts once)."""
        vocabulary: dict[str, int] = {}
        rows: list[int] = []
        columns: list[int] = []
        for row, terms in enumerate(queries):
            for term in dict.fromkeys(terms):
                rows.append(row)
                columns.append(vocabulary.setdefault(term, len(vocabulary)))
        incidence = torch.sparse_coo_tensor(
            torch.tensor([rows, columns], dtype=torch.long).reshape(2, -1),
            torch.ones(len(rows)),
            (len(queries), len(vocabulary)),
            check_invariants=True,
        ).coalesce()
        sizes = torch.zeros(len(queries)).index_add_(0, torch.tensor(rows, dtype=torch.long), torch.ones(len(rows)))
        return cls(queries, vocabulary, incidence, sizes)

    def shared(self, sets: Sequence[Iterable[str]]) -> torch.Tensor:
        """(B, N) float: how many of query i's terms set j holds (terms outside the queries'
        vocabulary cannot be shared, so they are left out). Exact small integers."""
        rows: list[int] = []
        columns: list[int] = []
        for column, terms in enumerate(sets):
            for term in dict.fromkeys(terms):
                index = self.vocabulary.get(term)
                if index is not None:
                    rows.append(index)
                    columns.append(column)
        dense = torch.zeros(len(self.vocabulary), len(sets))
        dense[torch.tensor(rows, dtype=torch.long), torch.tensor(columns, dtype=torch.long)] = 1.0
        return torch.sparse.mm(self.incidence, dense)

    def covered_by(self, sets: Sequence[Iterable[str]]) -> torch.Tensor:
        """(B, N) bool: every term of query i is in set j (a query without terms is covered by none)."""
        sizes = self.sizes.unsqueeze(1)
        return (sizes > 0) & (self.shared(sets) == sizes)
