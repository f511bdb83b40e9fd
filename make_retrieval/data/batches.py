"""Training batches: click pairs with decoded images, keyword pseudo-queries and positive masks.

The masks carry the false-negative handling of METHOD.md. Always: a product clicked by the same
query elsewhere in the batch is not a negative. With Keyword Enhancement (part 3): identical queries
share positives, queries whose terms overlap (Jaccard >= threshold) are weighted positives of each
other's products, and a product whose keywords cover every query term is never a negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from make_retrieval.data.catalog import Catalog, load_image
from make_retrieval.data.pairs import Clicks
from make_retrieval.losses import Targets
from make_retrieval.model.keywords import KeywordExtractor, tokenize


@dataclass
class Batch:
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

    def __getitem__(self, i: int) -> tuple[str, int, torch.Tensor]:
        product = self.clicks.products[i]
        return self.clicks.queries[i], product, load_pixels(self.catalog, product, self.image_size)


class BatchBuilder:
    """``collate_fn``: stacks items and computes the positive / excluded masks."""

    def __init__(
        self,
        catalog: Catalog,
        keywords: KeywordExtractor | None,
        similar_threshold: float,
    ):
        self.catalog, self.keywords, self.similar_threshold = catalog, keywords, similar_threshold

    def __call__(self, items: list[tuple[str, int, torch.Tensor]]) -> Batch:
        queries = [q for q, _, _ in items]
        products = torch.tensor([p for _, p, _ in items])
        pixels = torch.stack([x for _, _, x in items])
        has_image = torch.tensor([self.catalog.images[p] is not None for _, p, _ in items])
        same_product = (products.unsqueeze(0) == products.unsqueeze(1)).float()
        same_query = torch.tensor([[a == b for b in queries] for a in queries])
        if self.keywords is None:
            positives, excluded = same_product, same_query
        else:
            positives, excluded = self._keyword_masks(queries, products.tolist(), same_product, same_query)
        keyword_texts = [] if self.keywords is None else [self.keywords.text(p) for p in products.tolist()]
        titles = [self.catalog.titles[p] for p in products.tolist()]
        targets = Targets(positives, excluded, same_product, has_image)
        return Batch(queries, titles, keyword_texts, pixels, targets)

    def _keyword_masks(
        self, queries: list[str], products: list[int], same_product: torch.Tensor, same_query: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.keywords is not None
        terms = [set(tokenize(q)) for q in queries]
        size = len(queries)
        similar = torch.zeros(size, size)
        covered = torch.zeros(size, size, dtype=torch.bool)
        for i in range(size):
            for j in range(size):
                union = terms[i] | terms[j]
                overlap = len(terms[i] & terms[j]) / len(union) if union else 0.0
                if overlap >= self.similar_threshold:
                    similar[i, j] = overlap
                covered[i, j] = self.keywords.covers(products[j], terms[i])
        positives = torch.maximum(same_product, torch.maximum(same_query.float(), similar))
        return positives, covered
