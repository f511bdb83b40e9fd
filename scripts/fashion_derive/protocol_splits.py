"""The query splits of the development protocol (derive_protocol.py, issue 21): a click log cut
to a budget, eval intents that compose attribute values seen in training, and article types held
out of training. Each is a derive.Splitter once its click budget is bound (functools.partial)."""

from __future__ import annotations

from collections import defaultdict

from .pairs import (
    SPLITS,
    Split,
    SplitQueries,
    group_queries,
    split_of_intents,
    split_queries,
    synthesise_clicks,
)
from .relevance import ProductIndex
from .sampling import rng_for
from .vocabulary import Intent, type_words

HELD_OUT_TEST, HELD_OUT_VALID = 0.2, 0.1  # shares of the article types held out for test and for valid
ATTRIBUTES = ("article_type", "colour", "gender", "usage")

Value = tuple[str, str]  # (attribute, value) that an intent names, e.g. ("colour", "Green")


def values_of(it: Intent) -> set[Value]:
    """The attribute values an intent names (its article type and any colour, gender, usage)."""
    return {(a, getattr(it, a)) for a in ATTRIBUTES if getattr(it, a)}


def cut_log(by_split: SplitQueries, index: ProductIndex, seed: int, max_clicks: int, cover: bool = False) -> Split:
    """`by_split` with a small train log: its train queries in a seeded order, each kept while its clicks
    still fit in `max_clicks`; with `cover`, first the queries naming a value no kept query names yet, so
    that the small log still names every attribute value it can."""
    train = by_split["train"]
    order = sorted(q for v in train.values() for q in v)
    rng_for(seed, "log").shuffle(order)
    all_clicks = synthesise_clicks(train, index, seed)
    n_clicks: dict[str, int] = defaultdict(int)
    for q, _, _ in all_clicks:
        n_clicks[q] += 1
    kept: set[str] = set()
    seen: set[Value] = set()
    left = max_clicks
    for new_values_only in (True, False) if cover else (False,):
        for q, it in order:
            if q in kept or n_clicks[q] > left or (new_values_only and values_of(it) <= seen):
                continue
            kept.add(q)
            seen |= values_of(it)
            left -= n_clicks[q]
    kept_train = defaultdict(list, {k: [q for q in v if q[0] in kept] for k, v in train.items()})
    clicks = [c for c in all_clicks if c[0] in kept]
    return Split({**by_split, "train": kept_train}, clicks, {"train_queries_before_log_cut": len(order)})


def split_small_log(surfaces: dict[Intent, list[str]], index: ProductIndex, seed: int, max_clicks: int) -> Split:
    """The 70/10/20 intent split of derive_fashion_queries.py, its train log cut to `max_clicks` clicks."""
    return cut_log(split_queries(surfaces, seed), index, seed, max_clicks)


def split_compositional(surfaces: dict[Intent, list[str]], index: ProductIndex, seed: int, max_clicks: int) -> Split:
    """Eval intents that are new combinations of values each seen in training: the 70/10/20 split with every
    type-only intent in train (a single value is no combination), a log that names the values first, and
    the valid/test intents naming a value no kept train query names left out."""
    split_of = split_of_intents(sorted(surfaces), seed)
    split_of.update({it: "train" for it in surfaces if it.kind == "type"})
    split = cut_log(group_queries(surfaces, split_of), index, seed, max_clicks, cover=True)
    by_split = split.by_split
    seen = set().union(*(values_of(it) for v in by_split["train"].values() for _, it in v))
    dropped = {}
    for name in ("valid", "test"):
        before = {it for v in by_split[name].values() for _, it in v}
        by_split[name] = defaultdict(
            list, {k: [q for q in v if values_of(q[1]) <= seen] for k, v in by_split[name].items()}
        )
        dropped[name] = len(before - {it for v in by_split[name].values() for _, it in v})
    check_compositional(by_split)
    return split._replace(notes={**split.notes, "eval_intents_left_out_for_a_value_unseen_in_train": dropped})


def check_compositional(by_split: SplitQueries) -> None:
    """Assert that every valid/test intent is a combination unseen in train of values each seen there."""
    train = {it for v in by_split["train"].values() for _, it in v}
    seen = set().union(*(values_of(it) for it in train))
    for split in ("valid", "test"):
        for v in by_split[split].values():
            for q, it in v:
                assert it not in train and it.kind != "type" and values_of(it) <= seen, (split, q, it)


def names_type(query: str, article_type: str) -> bool:
    """True if the query holds a shopper word of the article type as whole words ("sports sandals": Sandals)."""
    words = query.split()
    return any(
        words[i : i + len(w)] == w for w in (t.split() for t in type_words(article_type)) for i in range(len(words))
    )


def type_groups(types: list[str]) -> list[tuple[str, ...]]:
    """The article types in groups that are held out together: a type joins one whose shopper word names it
    ("sports sandals" names Sandals, "kurta set" Kurtas), so no query of a kept type names a held-out one."""
    group = {t: {t} for t in types}
    for a in types:
        for b in types:
            if a != b and group[a] is not group[b] and any(names_type(w, a) for w in type_words(b)):
                merged = group[a] | group[b]
                for t in merged:
                    group[t] = merged
    return sorted({tuple(sorted(g)) for g in group.values()})


def split_category(surfaces: dict[Intent, list[str]], index: ProductIndex, seed: int, max_clicks: int) -> Split:
    """Article types unseen in training: a seeded HELD_OUT_TEST share of the types (in type_groups) gives
    every test intent, a disjoint HELD_OUT_VALID share every valid one, the rest train (its log cut)."""
    types = sorted({it.article_type for it in surfaces})
    groups = type_groups(types)
    rng_for(seed, "held-out types").shuffle(groups)
    want = {"test": round(HELD_OUT_TEST * len(types)), "valid": round(HELD_OUT_VALID * len(types))}
    held: dict[str, list[str]] = {"test": [], "valid": [], "train": []}
    for g in groups:
        split = next((s for s in ("test", "valid") if len(held[s]) < want[s]), "train")
        held[split] += g
    split_of = {t: s for s in SPLITS for t in held[s]}
    by_split = group_queries(surfaces, {it: split_of[it.article_type] for it in surfaces})
    split = cut_log(by_split, index, seed, max_clicks)
    check_held_out(split.by_split, held["valid"], held["test"])
    held_out = {s: sorted(held[s]) for s in ("valid", "test")}
    return split._replace(notes={**split.notes, "article_types_with_intents": len(types), "held_out_types": held_out})


def check_held_out(by_split: SplitQueries, valid_types: list[str], test_types: list[str]) -> None:
    """Assert that no train query names a valid or test type, no valid query a test type, and that each
    eval split's intents are of its held-out types only."""
    queries = {s: [q for v in by_split[s].values() for q in v] for s in SPLITS}
    for split, types in (("valid", valid_types), ("test", test_types)):
        assert all(it.article_type in types for _, it in queries[split]), split
        named_by = queries["train"] + (queries["valid"] if split == "test" else [])
        assert not any(names_type(q, t) for q, _ in named_by for t in types), split
