"""The Splits section of a protocol split's README.md: how its queries were split and its train log cut,
from stats.json's `protocol`, so that a reader can tell what the split measures and how it was made."""

from __future__ import annotations

from .pairs import CLICKS_PER_QUERY, Caps
from .protocol_splits import HELD_OUT_TEST, HELD_OUT_VALID

_INTENT_SPLIT = """Intents, not only strings, are split (per kind, seeded shuffle): 70% train, 10% valid, 20% test,
so valid and test intents are unseen in training and no valid/test query string occurs in train."""

_COMPOSITIONAL = """Intents are split per kind (seeded shuffle) 70% train, 10% valid, 20% test, except that every
type-only intent goes to train: a single value is no combination. The train log takes first, in
its seeded order, the queries that name a value (article type, colour, gender, usage) that no query
kept before names, then the others. A valid or test intent is kept only if each of its values is
named by a kept train query ({valid} valid and {test} test intents were left out); its full
combination is never a train intent. So each valid/test query combines values seen in training in
a way never trained ("women green kurta" tested after "women green top" and "men kurta"). The
intent of every query is in `stats.json` (`protocol.query_intents`)."""

_CATEGORY = """Article types are held out of training. Types are grouped first, a type with the one whose shopper
word names it ("sports sandals" names Sandals, "kurta set" Kurtas); the groups are shuffled (seeded)
and taken in turn for test until it has {test_share:.0%} of the {n_types} article types with queries, then for
valid until it has {valid_share:.0%}; the rest are train. Every intent of a test type is a test intent,
of a valid type a valid one. No train query names a valid or test type, and no valid query a test
type (checked on the query strings, as whole words).

- test types ({n_test}): {test}
- valid types ({n_valid}): {valid}"""

_LOG_AND_EVAL = """Train: the train queries in a seeded order, each kept while its clicks still fit in
{max_clicks} clicks ({kept} of {before} train queries kept); a query's clicks are up to {per_query} of its
relevance-2 products, sampled, with weight 1.0. Valid/test: every relevant product (relevance 1 and
2) of each query; queries are capped at {valid_cap} (valid) and {test_cap} (test), sampled stratified
over intent kinds. Relevance comes from attributes only: e.g. a product whose title says "Black" but
whose `base_colour` is "Grey" counts as grey. Article types with queries: {types[train]} train,
{types[valid]} valid, {types[test]} test."""


def intent_split_how(protocol: dict) -> str:
    """How small-log, text-only and colour-from-photo split their queries: by intent, as data/demo."""
    return _INTENT_SPLIT


def compositional_how(protocol: dict) -> str:
    """How compositional split its queries, with the eval intents left out for an unseen value."""
    left_out = protocol["eval_intents_left_out_for_a_value_unseen_in_train"]
    return _COMPOSITIONAL.format(valid=left_out["valid"], test=left_out["test"])


def category_how(protocol: dict) -> str:
    """How category-held-out split its queries, with the held-out article types."""
    held = protocol["held_out_types"]
    return _CATEGORY.format(
        test_share=HELD_OUT_TEST,
        valid_share=HELD_OUT_VALID,
        n_types=protocol["article_types_with_intents"],
        n_test=len(held["test"]),
        n_valid=len(held["valid"]),
        test=", ".join(held["test"]),
        valid=", ".join(held["valid"]),
    )


def splits_text(how: str, stats: dict, caps: Caps) -> str:
    """The Splits section's body: how the queries were split, then the train log and the eval queries."""
    return f"{how}\n\n" + _LOG_AND_EVAL.format(
        max_clicks=stats["protocol"]["max_clicks"],
        kept=stats["queries"]["train"],
        before=stats["protocol"]["train_queries_before_log_cut"],
        per_query=CLICKS_PER_QUERY,
        valid_cap=caps.valid,
        test_cap=caps.test,
        types=stats["protocol"]["article_types_with_queries"],
    )
