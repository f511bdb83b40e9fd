"""The batch masks as tensor operations (data/masks.py) equal their definition, written here as the
pairwise loops the builder ran before issue 22, on random batches: several ranks, hard negatives on
and off, both similar-query rules, duplicate queries, repeated terms and queries with no term."""

from __future__ import annotations

import random

import pytest
import torch

from make_retrieval.data.batches import BatchBuilder, BatchLayout, SimilarQueries
from make_retrieval.data.catalog import Catalog
from make_retrieval.data.keywords import KeywordExtractor, tokenize

WORDS = ["red", "blue", "shirt", "men", "women", "casual", "heels", "watch", "black", "slim", "cotton", "kurta"]


def reference_weight(rule: SimilarQueries, a: set[str], b: set[str]) -> float:
    """KE part 3, pair by pair: Jaccard overlap from the threshold, for subset only when a <= b."""
    union = a | b
    if not union or (rule.rule == "subset" and not a <= b):
        return 0.0
    overlap = len(a & b) / len(union)
    return overlap if overlap >= rule.threshold else 0.0


def reference_targets(
    items: list[tuple[str, int, float]], hard: list[int], keywords: KeywordExtractor, rule: SimilarQueries
) -> dict[str, torch.Tensor]:
    """Every mask of a global batch from loops over every pair."""
    size, columns = len(items), [p for _, p, _ in items] + hard
    terms = [tokenize(q) for q, _, _ in items]
    same_product = torch.tensor([[float(a == b) for b in columns] for a in columns])
    similar = torch.zeros(size, len(columns))
    covered = torch.zeros(size, len(columns), dtype=torch.bool)
    for i in range(size):
        for j, product in enumerate(columns):
            if j < size:
                similar[i, j] = reference_weight(rule, set(terms[i]), set(terms[j]))
            covered[i, j] = bool(terms[i]) and set(terms[i]).issubset(keywords.keywords[product])
    texts = [keywords.text(p) for p in columns]
    return {
        "positives": torch.maximum(same_product[:size], similar),
        "excluded": covered,
        "same_product": same_product,
        "same_keywords": torch.tensor([[a == b for b in texts] for a in texts[:size]]),
    }


def random_catalog(draw: random.Random, size: int) -> Catalog:
    titles = [" ".join(draw.choices(WORDS, k=draw.randint(3, 8))) for _ in range(size)]
    return Catalog([f"p{i}" for i in range(size)], titles, [None] * size, [None] * size, [{}] * size)


def random_query(draw: random.Random) -> str:
    if draw.random() < 0.05:
        return "!!"  # no term at all
    return " ".join(draw.choices(WORDS, k=draw.randint(1, 4))).title()  # case differs, terms may repeat


@pytest.mark.parametrize(("world_size", "hard"), [(1, False), (1, True), (2, True), (4, True), (4, False)])
@pytest.mark.parametrize("rule", ["subset", "jaccard"])
def test_tensor_masks_equal_the_pairwise_definition(world_size: int, hard: bool, rule: str) -> None:
    draw = random.Random(f"{world_size}{hard}{rule}")
    catalog = random_catalog(draw, 60)
    clicks = [(random_query(draw), draw.randrange(60)) for _ in range(200)]
    keywords = KeywordExtractor.fit(catalog.titles, clicks, 3)
    similar = SimilarQueries(rule, draw.choice([0.3, 0.5]))
    items = [(q, p, draw.choice([1.0, 2.5])) for q, p in draw.sample(clicks, 48)]
    candidates = {q: draw.sample(range(60), 3) for q, _, _ in items if hard and draw.random() < 0.6}
    global_hard: list[int] = []
    for rank in range(world_size):
        builder = BatchBuilder(catalog, keywords, similar, lambda product: torch.zeros(2), rank, world_size)
        builder.set_hard_negatives(candidates, seed=3)
        batch = builder(items)
        layout = batch.layout
        if rank == 0:
            global_hard = [p for p in (builder._draw(q, p) for q, p, _ in items) if p is not None]
            expected = reference_targets(items, global_hard, keywords, similar)
        for name, tensor in expected.items():
            torch.testing.assert_close(getattr(batch.targets, name), tensor, rtol=0, atol=0, msg=name)
        assert batch.targets.weights.tolist() == [w for _, _, w in items]
        # this rank's slice: its rows, then the hard negatives its own rows drew
        local = 48 // world_size
        rows = range(rank * local, (rank + 1) * local)
        assert batch.queries == [items[i][0] for i in rows]
        assert batch.keywords == [keywords.text(items[i][1]) for i in rows]
        own_hard = [builder._draw(*items[i][:2]) for i in rows]
        titles = [catalog.titles[items[i][1]] for i in rows] + [catalog.titles[p] for p in own_hard if p is not None]
        assert batch.titles == titles
        assert layout.columns == 48 + len(global_hard)
    assert hard == bool(global_hard)


def test_gathered_columns_come_back_in_target_order() -> None:
    """Rank r sends [its clicked columns, its hard negatives, padding]; gather_order undoes it."""
    drew = [True, False, False, False, True, True, False, True]  # ranks of 2 pairs: hard 1, 0, 2, 1
    layouts = [BatchLayout.of(drew, world_size=4, rank=r) for r in range(4)]
    assert layouts[0].hard_per_rank == (1, 0, 2, 1) and layouts[0].columns == 12
    assert [layout.pad for layout in layouts] == [1, 2, 0, 1]
    sent = torch.cat(
        [torch.tensor([*layout.local_columns, *[-1] * layout.pad]) for layout in layouts]
    )  # what each rank encodes, labelled by global column
    order = layouts[0].gather_order()
    assert order is not None and sent[order].tolist() == list(range(12))
    assert BatchLayout.of(drew).gather_order() is None
    with pytest.raises(ValueError, match="does not split over 3 ranks"):
        BatchLayout.of(drew, world_size=3)
