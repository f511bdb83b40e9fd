"""The query-product pairs of train/valid/test.parquet: intents split into train/valid/test, the
simulated clicks of train, the capped and graded valid/test queries, and the checks that the
splits are disjoint."""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple

from .cli import Options
from .relevance import ProductIndex
from .sampling import rng_for, sample_sorted, stratified_cap
from .vocabulary import KINDS, Intent

CLICKS_PER_QUERY = 8  # simulated clicks per train query, at most
TRAIN_FRAC, VALID_FRAC = 0.7, 0.1  # of each kind's intents; test gets the rest

Query = tuple[str, Intent]  # (query string, the intent it renders)
SplitQueries = dict[str, dict[str, list[Query]]]  # split -> intent kind -> queries
Clicks = list[tuple[str, str, float]]  # (query, product_id, weight): the rows of train.parquet
SPLITS = ("train", "valid", "test")


class Caps(NamedTuple):
    """The number of valid and test queries kept."""

    valid: int
    test: int


class Judged(NamedTuple):
    """The valid and test queries kept under the caps, and their relevant products."""

    queries: dict[str, list[Query]]  # "valid"/"test" -> queries, sorted
    rows: dict[str, list[tuple[str, str, int]]]  # "valid"/"test" -> (query, product_id, relevance)
    caps: Caps


class Split(NamedTuple):
    """The queries of each split and the clicks of train, as a splitter (derive.Splitter) makes them."""

    by_split: SplitQueries
    clicks: Clicks
    notes: dict  # what the splitter did, for stats.json ({} for the split of derive_fashion_queries.py)


class Pairs(NamedTuple):
    """The rows of train/valid/test.parquet and the queries they come from."""

    by_split: SplitQueries  # every query (before the valid/test caps)
    judged: Judged
    rows: dict[str, list[tuple]]  # train: (query, product_id, weight); valid/test: as in Judged.rows


def split_of_intents(intents: list[Intent], seed: int) -> dict[Intent, str]:
    """Each intent's split: per kind a seeded shuffle, 70/10/20 into train/valid/test."""
    split_of: dict[Intent, str] = {}
    for kind, _ in KINDS:
        items = sorted(it for it in intents if it.kind == kind)
        rng_for(seed, "split", kind).shuffle(items)
        n_tr = round(TRAIN_FRAC * len(items))
        n_va = round(VALID_FRAC * len(items))
        for i, it in enumerate(items):
            split_of[it] = "train" if i < n_tr else "valid" if i < n_tr + n_va else "test"
    return split_of


def group_queries(surfaces: dict[Intent, list[str]], split_of: dict[Intent, str]) -> SplitQueries:
    """The query strings of each split by intent kind, each intent in the split `split_of` gives it."""
    by_split: SplitQueries = {s: defaultdict(list) for s in SPLITS}
    for it in sorted(surfaces):
        for s in surfaces[it]:
            by_split[split_of[it]][it.kind].append((s, it))
    return by_split


def split_queries(surfaces: dict[Intent, list[str]], seed: int) -> SplitQueries:
    """Split the intents per kind 70/10/20 into train/valid/test, so that eval intents are unseen in training."""
    return group_queries(surfaces, split_of_intents(sorted(surfaces), seed))


def synthesise_clicks(train: dict[str, list[Query]], index: ProductIndex, seed: int) -> Clicks:
    """(query, product_id, 1.0) for up to CLICKS_PER_QUERY sampled relevance-2 products: the training signal."""
    clicks = []
    for q, it in sorted(q for v in train.values() for q in v):
        rel2 = [pid for pid, r in index.relevant(it) if r == 2]
        for pid in sample_sorted(rng_for(seed, "clicks", q), rel2, CLICKS_PER_QUERY):
            clicks.append((q, pid, 1.0))
    return clicks


def eval_caps(opts: Options, n_products: int) -> Caps:
    """--valid-queries and --test-queries, or defaults that grow with the catalog."""
    test_cap = opts.test_queries
    if test_cap is None:
        test_cap = max(600, min(2000, 600 * n_products // 4000))
    valid_cap = opts.valid_queries if opts.valid_queries is not None else test_cap // 2
    return Caps(valid_cap, test_cap)


def judge_relevance(by_split: SplitQueries, index: ProductIndex, caps: Caps, seed: int) -> Judged:
    """Cap the valid/test queries (stratified over kinds) and grade every relevant product: the eval labels."""
    queries: dict[str, list[Query]] = {}
    rows: dict[str, list[tuple[str, str, int]]] = {}
    for split, cap in (("valid", caps.valid), ("test", caps.test)):
        capped = stratified_cap(by_split[split], cap, rng_for(seed, "cap", split))
        queries[split] = sorted(q for v in capped.values() for q in v)
        rows[split] = [(q, pid, r) for q, it in queries[split] for pid, r in index.relevant(it)]
    return Judged(queries, rows, caps)


def check_pairs(by_split: SplitQueries, clicks: Clicks, judged: Judged, index: ProductIndex) -> None:
    """Assert that the set algebra agrees with grade() and that no query or eval intent is in two splits."""
    for _, it in (judged.queries["valid"] + judged.queries["test"])[:200]:
        assert index.graded(it) == index.relevant(it), it
    train_q = {r[0] for r in clicks}
    valid_q = {r[0] for r in judged.rows["valid"]}
    test_q = {r[0] for r in judged.rows["test"]}
    assert not (train_q & valid_q) and not (train_q & test_q) and not (valid_q & test_q)
    train_intents = {it for v in by_split["train"].values() for _, it in v}
    for split in ("valid", "test"):
        assert not any(it in train_intents for _, it in judged.queries[split])
