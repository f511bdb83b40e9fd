"""From the source catalog to the query-product pairs of one output directory: the stages that
derive_fashion_queries.py and derive_protocol.py share, with the split of the queries passed in."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pandas as pd

from .catalog import Catalog, choose_products
from .cli import Options
from .pairs import Pairs, Split, check_pairs, eval_caps, judge_relevance, split_queries, synthesise_clicks
from .queries import IntentChoice, Queries, choose_intents, derive_queries
from .relevance import ProductIndex
from .titles import Titles, clean_titles
from .vocabulary import Intent

# How the queries of an output are split, and train's clicks made: (surfaces, index, seed) -> Split.
Splitter = Callable[[dict[Intent, list[str]], ProductIndex, int], Split]


class Derived(NamedTuple):
    """Everything an output directory is written from."""

    products: pd.DataFrame
    titles: Titles
    intents: IntentChoice
    queries: Queries
    pairs: Pairs
    notes: dict  # what the splitter reports (Split.notes)


def split_by_intent(surfaces: dict[Intent, list[str]], index: ProductIndex, seed: int) -> Split:
    """The split of derive_fashion_queries.py: intents 70/10/20 per kind, clicks for every train query."""
    by_split = split_queries(surfaces, seed)
    return Split(by_split, synthesise_clicks(by_split["train"], index, seed), {})


def derive_pairs(catalog: Catalog, opts: Options, splitter: Splitter = split_by_intent) -> Derived:
    """Choose the products, clean titles, derive intents and queries, split them and grade the eval queries."""
    products = choose_products(catalog, opts)
    titles = clean_titles(products, catalog.colours, opts.strip_colour)
    intents = choose_intents(products, opts.max_intents, opts.seed)
    queries = derive_queries(intents.kept, opts.seed)
    index = ProductIndex(products)
    split = splitter(queries.surfaces, index, opts.seed)
    judged = judge_relevance(split.by_split, index, eval_caps(opts, len(products)), opts.seed)
    check_pairs(split.by_split, split.clicks, judged, index)
    pairs = Pairs(split.by_split, judged, {"train": split.clicks, **judged.rows})
    return Derived(products, titles, intents, queries, pairs, split.notes)
