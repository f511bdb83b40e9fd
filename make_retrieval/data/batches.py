"""Training batches: click pairs with decoded images, keyword pseudo-queries and positive masks.

The masks carry the false-negative handling of docs/METHOD.md. Always: a product clicked by the same
query elsewhere in the batch is not a negative. With Keyword Enhancement (part 3): identical queries
share positives, similar queries (``SimilarQueries.weights``) are weighted positives of one another's
products, and a product whose keywords cover every query term is never a negative. They are built
once per global batch with tensor operations (data/masks.py); ``BatchLayout`` says where each block
of rows and columns sits.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.utils.data import Dataset, Sampler

from make_retrieval.data.catalog import Catalog, load_image
from make_retrieval.data.keywords import KeywordExtractor, tokenize
from make_retrieval.data.masks import QueryTerms, distinct, equal
from make_retrieval.data.pairs import Clicks
from make_retrieval.errors import ConfigError

#: (query, product position, click weight)
Item = tuple[str, int, float]


@dataclass(frozen=True)
class SimilarQueries:
    """KE part 3: how much query ``b``'s clicked product counts as a positive of query ``a``.

    ``jaccard`` (our first reading of docs/METHOD.md) is symmetric: Jaccard(a, b) when it reaches the
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

    def weights(self, terms: QueryTerms) -> torch.Tensor:
        """(B, B) float: the positive weight of query j's product for query i (0: not similar). Only
        pairs that share a term can be similar, so the overlap |a & b| / |a | b| is computed for
        those alone, in float64 as Python divides two counts."""
        shared = terms.shared(terms.queries)
        candidates = shared > 0
        if self.rule == "subset":
            candidates &= shared == terms.sizes.unsqueeze(1)
        rows, columns = candidates.nonzero(as_tuple=True)
        common = shared[rows, columns].double()
        overlap = common / (terms.sizes[rows].double() + terms.sizes[columns].double() - common)
        similar = overlap >= self.threshold
        weights = torch.zeros_like(shared)
        weights[rows[similar], columns[similar]] = overlap[similar].float()
        return weights


@dataclass(frozen=True)
class BatchLayout:
    """Where each block of a global batch sits: the one place that knows it (issue 22).

    B click pairs make the B query rows, the B keyword rows and the first B product columns (row i,
    keyword row i and column i are pair i: ``clicked``); the H mined hard negatives follow as columns
    B..B+H-1, in the order of the rows that drew them (``hard``). Over N ranks, rank r holds pairs
    r*B/N..(r+1)*B/N-1 and the hard negatives its own rows drew. Gathered, each rank's product block
    is [its clicked columns, its hard negatives, zero rows up to the widest rank] and
    ``gather_order`` puts every column back in place.
    """

    pairs: int
    #: hard negatives drawn by each rank's rows (one entry per rank)
    hard_per_rank: tuple[int, ...] = (0,)
    rank: int = 0

    @classmethod
    def of(cls, drew: Sequence[bool], world_size: int = 1, rank: int = 0) -> BatchLayout:
        """The layout of a global batch whose pair i drew a hard negative when ``drew[i]``."""
        pairs = len(drew)
        if pairs % world_size:
            raise ValueError(f"a global batch of {pairs} pairs does not split over {world_size} ranks")
        local = pairs // world_size
        return cls(pairs, tuple(sum(drew[r * local : (r + 1) * local]) for r in range(world_size)), rank)

    @property
    def world_size(self) -> int:
        return len(self.hard_per_rank)

    @property
    def columns(self) -> int:
        """C = B + H product columns."""
        return self.pairs + sum(self.hard_per_rank)

    @property
    def clicked(self) -> slice:
        """The clicked products' columns, which are also the keyword rows and columns."""
        return slice(0, self.pairs)

    @property
    def hard(self) -> slice:
        """The hard negatives' columns."""
        return slice(self.pairs, self.columns)

    @property
    def local_pairs(self) -> int:
        return self.pairs // self.world_size

    @property
    def rows(self) -> slice:
        """This rank's pairs (its query rows and clicked columns)."""
        return slice(self.rank * self.local_pairs, (self.rank + 1) * self.local_pairs)

    @property
    def local_columns(self) -> list[int]:
        """This rank's product columns: its clicked products, then the hard negatives its rows drew."""
        start = self.pairs + sum(self.hard_per_rank[: self.rank])
        return [*range(self.rows.start, self.rows.stop), *range(start, start + self.hard_per_rank[self.rank])]

    @property
    def pad(self) -> int:
        """Zero product rows this rank appends before gathering, so every rank sends as many."""
        return max(self.hard_per_rank) - self.hard_per_rank[self.rank]

    def gather_order(self) -> torch.Tensor | None:
        """Row of the gathered product block that holds each column (None in one process)."""
        if self.world_size == 1:
            return None
        local = self.local_pairs
        width = local + max(self.hard_per_rank)
        pairs = torch.arange(self.pairs)
        hard = [r * width + local + torch.arange(n) for r, n in enumerate(self.hard_per_rank)]
        return torch.cat([pairs // local * width + pairs % local, *hard])

    def column_weights(self, pair_weights: torch.Tensor) -> torch.Tensor:
        """Weights of the product columns: pair i's click weight, 1 for a hard negative."""
        return torch.cat([pair_weights, pair_weights.new_ones(self.columns - self.pairs)])


@dataclass
class Targets:
    """Who is whose positive in a global batch of B (query, product) pairs whose product side has
    C >= B columns, laid out as ``layout`` says; built by ``BatchBuilder``."""

    positives: torch.Tensor  # (B, C) float: query i vs product column j
    excluded: torch.Tensor  # (B, C) bool: product j is never a negative of query i
    same_product: torch.Tensor  # (C, C) float: column i and column j are the same product
    same_keywords: torch.Tensor  # (B, C) bool: product i and column j have the same keyword string
    has_image: torch.Tensor  # (C,) bool
    weights: torch.Tensor  # (B,) float: click weight of pair i
    layout: BatchLayout

    def to(self, device: torch.device) -> Targets:
        """The same masks on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return Targets(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in moved.items()})

    def side_weights(self, rows: str) -> torch.Tensor:
        """Weights of the rows of one side of an objective (model/objectives.py ROWS): queries and
        keyword pseudo-queries are pairs; products are columns, hard negatives included."""
        return self.layout.column_weights(self.weights) if rows == "products" else self.weights


@dataclass
class Batch:
    """A collated training batch: this rank's queries (and their keyword strings, empty without
    Keyword Enhancement) and product columns (titles, image inputs: pixels or cached features),
    with the targets of the whole global batch (``targets.layout`` says which part is this rank's)."""

    queries: list[str]
    titles: list[str]
    keywords: list[str]
    images: torch.Tensor
    #: (C_local,) bool: which of this rank's product columns have an image (``targets`` are global)
    has_image: torch.Tensor
    targets: Targets

    @property
    def layout(self) -> BatchLayout:
        return self.targets.layout

    def to(self, device: torch.device) -> Batch:
        """The batch's tensors on ``device`` (the texts are tokenised on the model's device)."""
        return dataclasses.replace(
            self, images=self.images.to(device), has_image=self.has_image.to(device), targets=self.targets.to(device)
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
    """An epoch's shuffled batches of item positions (one permutation drawn from ``generator`` per
    epoch), plus ``skip``: leading batches to leave out once, for resuming in the middle of an epoch."""

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


class BatchBuilder:
    """``collate_fn``: adds mined hard negatives, computes the masks of the global batch, reads the
    images of this rank's columns.

    The product side has C = B + H columns: the B clicked products, then H hard negatives (one per
    query that has mined candidates; H = 0 without hard-negative mining). With ``world_size`` N the
    items are the global batch (N x B): every rank computes the same global targets and keeps its own
    rows and columns, as ``BatchLayout`` places them (see distributed.py).
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
        drawn = [self._draw(q, p) for q, p, _ in items]
        layout = BatchLayout.of([p is not None for p in drawn], self.world_size, self.rank)
        columns = [p for _, p, _ in items] + [p for p in drawn if p is not None]
        weights = torch.tensor([w for _, _, w in items], dtype=torch.float32)
        targets, keyword_texts = self._targets(queries, columns, weights, layout)
        rows, picked = layout.rows, layout.local_columns
        products = [columns[i] for i in picked]
        images = torch.stack([self.images(p) for p in products])
        titles = [self.catalog.titles[p] for p in products]
        return Batch(queries[rows], titles, keyword_texts[rows], images, targets.has_image[picked], targets)

    def _targets(
        self, queries: list[str], columns: list[int], weights: torch.Tensor, layout: BatchLayout
    ) -> tuple[Targets, list[str]]:
        """The global batch's masks (tensor operations, data/masks.py) and its keyword strings."""
        clicked = layout.clicked
        ids = torch.tensor(columns)
        same_product = equal(ids, ids).float()
        # queries that differ only in case or punctuation are the same query; hard columns have none.
        # The term comparisons run once per distinct query (a log's head queries repeat in a batch).
        distinct_terms, query_ids = distinct(tuple(tokenize(q)) for q in queries)
        same_query = torch.zeros(layout.pairs, layout.columns, dtype=torch.bool)
        same_query[:, clicked] = equal(query_ids, query_ids)
        has_image = torch.tensor([self.catalog.images[p] is not None for p in columns])
        keyword_texts: list[str] = []
        same_keywords = torch.zeros_like(same_query)
        positives, excluded = same_product[clicked], same_query
        if self.keywords is not None:
            terms = QueryTerms.of(distinct_terms)
            similar = self.similar.weights(terms)[query_ids][:, query_ids]
            positives = positives.clone()
            positives[:, clicked] = torch.maximum(positives[:, clicked], similar)
            excluded = terms.covered_by([self.keywords.keywords[p] for p in columns])[query_ids]
            column_texts = [self.keywords.text(p) for p in columns]
            keyword_texts = column_texts[clicked]
            _, text_ids = distinct(column_texts)
            same_keywords = equal(text_ids[clicked], text_ids)
        targets = Targets(positives, excluded, same_product, same_keywords, has_image, weights, layout)
        return targets, keyword_texts
