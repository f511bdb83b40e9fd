"""Training batches: click pairs with decoded images, keyword pseudo-queries and positive masks.

The masks carry the false-negative handling of METHOD.md. Always: a product clicked by the same
query elsewhere in the batch is not a negative. With Keyword Enhancement (part 3): identical queries
share positives, similar queries (``SimilarQueries.weight``) are weighted positives of one another's
products, and a product whose keywords cover every query term is never a negative.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.utils.data import Dataset, Sampler

from make_retrieval.data.catalog import Catalog, load_image
from make_retrieval.data.keywords import KeywordExtractor, tokenize
from make_retrieval.data.pairs import Clicks
from make_retrieval.errors import ConfigError

#: (query, product position, click weight)
Item = tuple[str, int, float]


@dataclass(frozen=True)
class SimilarQueries:
    """KE part 3: how much query ``b``'s clicked product counts as a positive of query ``a``.

    ``jaccard`` (our first reading of METHOD.md) is symmetric: Jaccard(a, b) when it reaches the
    threshold. It makes "men red shirt" and "men blue shirt" positives of each other (1/2) although
    neither's product fits the other; on the demo catalog about 19 such pairs fall in every batch of
    64. ``subset`` keeps only pairs where every term of ``a`` is in ``b``: the more specific query's
    product also fits the broader one ("casual shirt" <- "black casual shirt"), weighted |a|/|b|.
    """

    rule: str = "subset"
    threshold: float = 0.5

    RULES = ("subset", "jaccard")

    def __post_init__(self) -> None:
        if self.rule not in self.RULES:
            raise ConfigError(f"loss.similar_query_rule: choose one of {list(self.RULES)}, got '{self.rule}'")

    def weight(self, a: set[str], b: set[str]) -> float:
        """Positive weight of ``b``'s product for query ``a`` (0: not similar)."""
        union = a | b
        if not union or (self.rule == "subset" and not a <= b):
            return 0.0
        overlap = len(a & b) / len(union)
        return overlap if overlap >= self.threshold else 0.0


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


@dataclass
class Batch:
    """A collated training batch: B queries (and their keyword strings, empty without Keyword
    Enhancement) against C >= B product columns (titles, image inputs: pixels or cached features).

    In a job of N ranks the targets cover the whole global batch while the texts and images are this
    rank's slice; ``column_order`` then puts the gathered product columns in the targets' order."""

    queries: list[str]
    titles: list[str]
    keywords: list[str]
    images: torch.Tensor
    #: (C_local,) bool: which of this rank's product columns have an image (``targets`` are global)
    has_image: torch.Tensor
    targets: Targets
    #: zero product rows to append before gathering (ranks may hold different numbers of hard negatives)
    pad_columns: int = 0
    column_order: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        """The batch's tensors on ``device`` (the texts are tokenised on the model's device)."""
        order = None if self.column_order is None else self.column_order.to(device)
        return dataclasses.replace(
            self,
            images=self.images.to(device),
            has_image=self.has_image.to(device),
            targets=self.targets.to(device),
            column_order=order,
        )


class ImageInputs(Protocol):
    """What the image tower reads for catalog product ``i``: decoded pixels (``Pixels``) or, for a
    frozen tower, its cached features (model/image_cache.py); zeros for a text-only product."""

    def __call__(self, product: int) -> torch.Tensor: ...


class Pixels:
    """Each product's image decoded to a 3 x size x size tensor in [-1, 1] (zeros without an image)."""

    def __init__(self, catalog: Catalog, size: int):
        self.catalog, self.size = catalog, size

    def __call__(self, product: int) -> torch.Tensor:
        path = self.catalog.images[product]
        return torch.zeros(3, self.size, self.size) if path is None else load_image(path, self.size)


class ClickDataset(Dataset):
    """Item i is the i-th click pair; images are decoded by the collate function (in the workers),
    only for the rank's own slice of the batch."""

    def __init__(self, clicks: Clicks):
        self.clicks = clicks

    def __len__(self) -> int:
        return len(self.clicks)

    def __getitem__(self, i: int) -> Item:
        return self.clicks.queries[i], self.clicks.products[i], self.clicks.weights[i]


class EpochBatches(Sampler[list[int]]):
    """An epoch's shuffled batches of item positions, drawn from ``generator`` exactly as the
    DataLoader's own RandomSampler + BatchSampler would (same runs, same numbers), plus ``skip``:
    leading batches to leave out once, for resuming in the middle of an epoch."""

    def __init__(self, size: int, batch_size: int, drop_last: bool, generator: torch.Generator):
        self.size, self.batch_size, self.drop_last, self.generator = size, batch_size, drop_last, generator
        self.skip = 0

    def __len__(self) -> int:
        return self.size // self.batch_size if self.drop_last else -(-self.size // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip = self.skip, 0
        order = torch.randperm(self.size, generator=self.generator).tolist()
        for k in range(skip, len(self)):
            yield order[k * self.batch_size : (k + 1) * self.batch_size]
        # RandomSampler draws one more permutation before it stops; keep the generator in step
        torch.randperm(self.size, generator=self.generator)


class BatchBuilder:
    """``collate_fn``: adds mined hard negatives, computes positive / excluded masks, reads images.

    The product side has C = B + H columns: the B clicked products, then H hard negatives (one per
    query that has mined candidates; H = 0 without hard-negative mining). With ``world_size`` N the
    items are the global batch (N x B) and this rank keeps rows ``rank*B:(rank+1)*B`` and their
    hard negatives (see distributed.py).
    """

    def __init__(
        self,
        catalog: Catalog,
        keywords: KeywordExtractor | None,
        similar: SimilarQueries,
        images: ImageInputs,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.catalog, self.keywords, self.similar = catalog, keywords, similar
        self.images, self.rank, self.world_size = images, rank, world_size
        self.hard_negatives: dict[str, list[int]] = {}
        self.seed = 0

    def set_hard_negatives(self, candidates: dict[str, list[int]], seed: int) -> None:
        """Per-query candidate products to draw one hard negative from (see train/hard_negatives.py).
        The draw depends only on (seed, query, product), not on batch order or worker process, so a
        resumed run draws what the uninterrupted one drew."""
        self.hard_negatives, self.seed = candidates, seed

    def _draw(self, query: str, product: int) -> int | None:
        candidates = self.hard_negatives.get(query)
        return random.Random(f"{self.seed}:{query}:{product}").choice(candidates) if candidates else None

    def __call__(self, items: list[Item]) -> Batch:
        queries = [q for q, _, _ in items]
        size = len(items)
        drawn = [self._draw(q, p) for q, p, _ in items]
        hard = [p for p in drawn if p is not None]
        columns = [p for _, p, _ in items] + hard
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
            weights=torch.tensor([w for _, _, w in items], dtype=torch.float32),
        )
        if self.world_size == 1:
            return self._batch(queries, keyword_texts, columns, list(range(len(columns))), targets)
        return self._rank_slice(queries, keyword_texts, columns, [p is not None for p in drawn], targets)

    def _batch(
        self, queries: list[str], keywords: list[str], columns: list[int], picked: list[int], targets: Targets
    ) -> Batch:
        """The batch over product columns ``picked`` (positions in ``columns``, the global column list)."""
        products = [columns[i] for i in picked]
        images = torch.stack([self.images(p) for p in products])
        titles = [self.catalog.titles[p] for p in products]
        return Batch(queries, titles, keywords, images, targets.has_image[picked], targets)

    def _rank_slice(
        self, queries: list[str], keywords: list[str], columns: list[int], drew: list[bool], targets: Targets
    ) -> Batch:
        """This rank's rows and columns of a global batch, and where its columns go once gathered."""
        size, world = len(queries), self.world_size
        if size % world:
            raise ValueError(f"a global batch of {size} pairs does not split over {world} ranks")
        local = size // world
        # hard-negative column of global row i, in the order the global batch appends them
        hard_index = [size + n for n in itertools.accumulate([0, *drew[:-1]])]
        per_rank = [[hard_index[i] for i in range(r * local, (r + 1) * local) if drew[i]] for r in range(world)]
        width = local + max(len(h) for h in per_rank)
        # gathered layout: rank r holds [its clicked products, its hard negatives, zero padding]
        order = torch.empty(len(columns), dtype=torch.long)
        for r, hard in enumerate(per_rank):
            for j in range(local):
                order[r * local + j] = r * width + j
            for j, column in enumerate(hard):
                order[column] = r * width + local + j
        rows = slice(self.rank * local, (self.rank + 1) * local)
        mine = [*range(rows.start, rows.stop), *per_rank[self.rank]]
        batch = self._batch(queries[rows], keywords[rows], columns, mine, targets)
        batch.pad_columns, batch.column_order = width - len(mine), order
        return batch

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
                    similar[i, j] = self.similar.weight(terms[i], terms[j])
                covered[i, j] = self.keywords.covers(product, terms[i])
        return torch.maximum(same_product, similar), covered
