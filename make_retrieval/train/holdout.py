"""Validation hygiene: what ``valid`` measures decides which checkpoint is kept, so it must hold
queries that training never saw. ``train`` counts the validation queries that also occur in the
click log and warns; when ``valid`` is absent or mostly seen, a seeded, disjoint slice of the
training queries (all their clicks) leaves training and becomes the validation set instead
(``train.valid_holdout``). Queries are compared by their set of lower-cased terms, so "red dress"
and "Dress  red" count as the same query and are never split across the two sides."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

from make_retrieval.config import TrainConfig
from make_retrieval.data.pairs import Clicks, DataDir, Judgements

#: Held-out validation queries at most: enough for a stable NDCG@10, cheap to search every validation.
HOLDOUT_MAX_QUERIES = 500


def query_key(query: str) -> str:
    """The query's lower-cased terms, sorted and deduplicated: how two queries are found equal."""
    return " ".join(sorted(set(query.casefold().split())))


@dataclass
class ValidationPlan:
    """What a run validates on and why: the user's ``valid`` split, a held-out slice of training
    queries, or nothing; with the overlap that was found."""

    #: "valid" (the user's split), "holdout" (training queries held out) or "none".
    source: str
    #: Queries of the user's valid split, and how many of them also occur in training.
    valid_queries: int = 0
    seen_in_train: int = 0
    #: The held-out training queries and their clicks (source "holdout").
    held_out: list[str] = field(default_factory=list)
    held_out_clicks: int = 0
    #: Why the plan is what it is, for the user.
    messages: list[str] = field(default_factory=list)

    def record(self) -> dict[str, object]:
        """The plan as written to the run folder and the metrics log."""
        return dataclasses.asdict(self)


def count_seen(valid: Judgements, clicks: Clicks) -> int:
    """Validation queries that also occur (as the same set of terms) among the training queries."""
    trained = {query_key(q) for q in clicks.queries}
    return sum(query_key(q) in trained for q in valid)


def plan_validation(data: DataDir, config: TrainConfig) -> tuple[DataDir, ValidationPlan]:
    """The data a run trains and validates on: ``data`` as given, or (holdout) with a slice of its
    training queries moved from the clicks to the ``valid`` judgements."""
    valid = data.judgements.get("valid")
    if not config.validate:
        return data, ValidationPlan("none", messages=["validation is off (train.validate: false)"])
    if data.train is None:  # streamed shards: never read whole here, so neither counted nor split
        source = "valid" if valid else "none"
        return data, ValidationPlan(source, len(valid or {}), messages=_sharded_messages(valid is not None))
    total = len(valid or {})
    seen = count_seen(valid, data.train) if valid else 0
    plan = ValidationPlan("valid" if valid else "none", total, seen)
    mostly_seen = seen > config.max_seen_valid * total
    if seen:
        plan.messages.append(
            f"{seen} of {total} validation queries ({seen / total:.0%}) also occur in training: on those, "
            "validation measures memory, not unseen queries"
        )
    if not (valid is None or mostly_seen):
        return data, plan
    why = "there is no valid split" if valid is None else f"more than {config.max_seen_valid:.0%} of valid is seen"
    if not config.valid_holdout:
        plan.messages.append(f"{why}; train.valid_holdout is off, so nothing is held out")
        return data, plan
    train, judged, held = _hold_out(data.train, data.catalog.product_ids, config.holdout_share, config.seed)
    if not held:
        plan.messages.append(f"{why}, and the click log has too few distinct queries to hold any out")
        return data, plan
    plan.source, plan.held_out, plan.held_out_clicks = "holdout", sorted(held), len(data.train) - len(train)
    plan.messages.append(
        f"{why}: holding out {len(held)} training queries ({plan.held_out_clicks} clicks) as the validation set "
        "for early stopping and best.pt (train.valid_holdout: false turns this off)"
    )
    return dataclasses.replace(data, train=train, judgements={**data.judgements, "valid": judged}), plan


def _hold_out(
    clicks: Clicks, product_ids: list[str], share: float, seed: int
) -> tuple[Clicks, Judgements, set[str]]:
    """Clicks without the held-out queries, the held-out queries' judgements (a clicked product is
    relevant, grade 1) and the held-out query strings. At least one query stays in training."""
    keys = sorted({query_key(q) for q in clicks.queries})
    count = min(round(share * len(keys)), HOLDOUT_MAX_QUERIES, len(keys) - 1)
    chosen = set(random.Random(f"valid-holdout|{seed}").sample(keys, max(count, 0)))
    kept = Clicks([], [], [])
    judged: Judgements = {}
    held: set[str] = set()
    for query, product, weight in zip(clicks.queries, clicks.products, clicks.weights, strict=True):
        if query_key(query) in chosen:
            held.add(query)
            judged.setdefault(query, {})[product_ids[product]] = 1
            continue
        kept.queries.append(query)
        kept.products.append(product)
        kept.weights.append(weight)
    return kept, judged, held


def _sharded_messages(has_valid: bool) -> list[str]:
    """What is said when the clicks are streamed from shards."""
    note = "clicks are streamed from train/ shards: valid is not checked against them and nothing is held out"
    return [note] if has_valid else [note, "no valid split: the run trains without validation"]
