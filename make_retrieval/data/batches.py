"""Training batches: click pairs with decoded images, keyword pseudo-queries and positive masks.

The masks carry the false-negative handling of METHOD.md. Always: a product clicked by the same
query elsewhere in the batch is not a negative. With Keyword Enhancement (part 3): identical queries
share positives, queries whose terms overlap (Jaccard >= threshold) are weighted positives of each
other's products, and a product whose keywords cover every query term is never a negative.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from make_retrieval.data.catalog import Catalog, load_image
from make_retrieval.data.pairs import Clicks
from make_retrieval.losses import Targets
from make_retrieval.model.keywords import KeywordExtractor, tokenize

#: (query, product position, click weight, pixels)
Item = tuple[str, int, float, torch.Tensor]


@dataclass
class Batch:
    """A collated training batch: B queries (and their keyword strings, empty without Keyword
    Enhancement) against C >= B product columns (titles, pixels)."""

    queries: list[str]
    titles: list[str]
    keywords: list[str]
    pixels: torch.Tensor
    targets: Targets


def load_pixels(catalog: Catalog, product: int, size: int) -> torch.Tensor:
    """The product's image tensor, or zeros for a text-only product."""
    path = catalog.images[product]
    return torch.zeros(3, size, size) if path is None else load_image(path, size)


class ClickDataset(Dataset):
    """Item i is the i-th click pair; returns plain Python/tensors so workers can decode images."""

    def __init__(self, clicks: Clicks, catalog: Catalog, image_size: int):
        self.clicks, self.catalog, self.image_size = clicks, catalog, image_size

    def __len__(self) -> int:
        return len(self.clicks)

    def __getitem__(self, i: int) -> Item:
        product = self.clicks.products[i]
        pixels = load_pixels(self.catalog, product, self.image_size)
        return self.clicks.queries[i], product, self.clicks.weights[i], pixels


class BatchBuilder:
    """``collate_fn``: stacks items, adds mined hard negatives, computes positive / excluded masks.

    The product side has C = B + H columns: the B clicked products, then H hard negatives (one per
    query that has mined candidates; H = 0 without hard-negative mining).
    """

    def __init__(self, catalog: Catalog, keywords: KeywordExtractor | None, similar_threshold: float):
        self.catalog, self.keywords, self.similar_threshold = catalog, keywords, similar_threshold
        self.hard_negatives: dict[str, list[int]] = {}
        self.rng = random.Random(0)

    def set_hard_negatives(self, candidates: dict[str, list[int]], seed: int) -> None:
        """Per-query candidate products to draw one hard negative from (see train/hard_negatives.py)."""
        self.hard_negatives, self.rng = candidates, random.Random(seed)

    def __call__(self, items: list[Item]) -> Batch:
        queries = [q for q, _, _, _ in items]
        size = len(items)
        hard = [self.rng.choice(c) for c in (self.hard_negatives.get(q) for q in queries) if c]
        columns = [p for _, p, _, _ in items] + hard
        ids = torch.tensor(columns)
        same_product = (ids.unsqueeze(0) == ids.unsqueeze(1)).float()
        # queries that differ only in case or punctuation are the same query; hard columns have none
        terms = [tokenize(q) for q in queries]
        same_query = torch.zeros(size, len(columns), dtype=torch.bool)
        same_query[:, :size] = torch.tensor([[a == b for b in terms] for a in terms])
        has_image = torch.tensor([self.catalog.images[p] is not None for p in columns])
        keyword_texts: list[str] = []
        same_keywords = torch.zeros_like(same_query)
        if self.keywords is None:
            positives, excluded = same_product[:size], same_query
        else:
            positives, excluded = self._keyword_masks([set(t) for t in terms], columns, same_product[:size])
            column_texts = [self.keywords.text(p) for p in columns]
            keyword_texts = column_texts[:size]
            same_keywords = torch.tensor([[a == b for b in column_texts] for a in keyword_texts])
        targets = Targets(
            positives=positives,
            excluded=excluded,
            same_product=same_product,
            same_keywords=same_keywords,
            has_image=has_image,
            weights=torch.tensor([w for _, _, w, _ in items], dtype=torch.float32),
        )
        pixels = [x for _, _, _, x in items] + [load_pixels(self.catalog, p, items[0][3].shape[-1]) for p in hard]
        titles = [self.catalog.titles[p] for p in columns]
        return Batch(queries, titles, keyword_texts, torch.stack(pixels), targets)

    def _keyword_masks(
        self, terms: list[set[str]], columns: list[int], same_product: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """KE part 3: weighted positives between similar queries, and keyword-covered non-negatives."""
        assert self.keywords is not None
        size = len(terms)
        similar = torch.zeros(size, len(columns))
        covered = torch.zeros(size, len(columns), dtype=torch.bool)
        for i in range(size):
            for j, product in enumerate(columns):
                if j < size:
                    union = terms[i] | terms[j]
                    overlap = len(terms[i] & terms[j]) / len(union) if union else 0.0
                    if overlap >= self.similar_threshold:
                        similar[i, j] = overlap
                covered[i, j] = self.keywords.covers(product, terms[i])
        return torch.maximum(same_product, similar), covered
