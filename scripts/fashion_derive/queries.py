"""Intents and their query strings: which attribute combinations get queries (choose_intents) and
how each is written (derive_queries), from the grammar of vocabulary.py with synonyms, word
orders and typos."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import NamedTuple

import pandas as pd

from .sampling import rng_for, stratified_cap
from .vocabulary import (
    GENDER_MATCHES,
    GENDER_WORDS,
    MAX_UNKNOWN_GENDER,
    NO_COLOUR_TYPES,
    NO_QUERY_TYPES,
    NO_USAGE_MASTER,
    USAGE_WORDS,
    Intent,
    colour_words,
    type_words,
    usage_in_type_name,
)

P_CANONICAL_WORD = 0.75  # probability that a slot uses its canonical word (else a synonym)
P_CANONICAL_ORDER = 0.7  # probability of the canonical word order gender colour usage type
N_SURFACES = [(1, 0.55), (2, 0.33), (3, 0.12)]  # surface strings per intent
P_MISSPELL = 0.04  # share of surface strings that get one typo
MAX_WORDS = 4  # shoppers type 1-4 words: intents that need more are not rendered


class IntentChoice(NamedTuple):
    """The intents that get queries."""

    n_candidates: int  # intents with >= 2 fully matching products, before the --max-intents cap
    kept: list[Intent]  # sorted


class Queries(NamedTuple):
    """The query strings of each intent (an intent whose every string was ambiguous has none)."""

    surfaces: dict[Intent, list[str]]  # every string belongs to exactly one intent
    n_misspelt: int


def enumerate_intents(prods: pd.DataFrame) -> dict[Intent, int]:
    """Every intent with its number of relevance-2 products in `prods`: all combinations of the
    kinds in KINDS that some product has, counting the products that match all attributes."""
    n_type: Counter = Counter(prods["article_type"])
    pairs = zip(prods["article_type"], prods["gender"], strict=True)
    n_unknown: Counter = Counter(t for t, g in pairs if not g)
    no_gender = {t for t in n_type if n_unknown[t] > MAX_UNKNOWN_GENDER * n_type[t]}
    counts: Counter = Counter()
    for t, mc, c, g, u in zip(
        prods["article_type"],
        prods["master_category"],
        prods["base_colour"],
        prods["gender"],
        prods["usage"],
        strict=True,
    ):
        if t in NO_QUERY_TYPES:
            continue
        colours = [""] + ([c] if c and t not in NO_COLOUR_TYPES else [])
        genders = [""] + ([q for q, m in GENDER_MATCHES.items() if g in m] if g and t not in no_gender else [])
        usages = [""] + ([u] if u in USAGE_WORDS and mc not in NO_USAGE_MASTER and not usage_in_type_name(t) else [])
        for cc in colours:
            for gg in genders:
                for uu in usages:
                    it = Intent(t, colour=cc, gender=gg, usage=uu)
                    if it.kind is not None:
                        counts[it] += 1
    return dict(counts)


def choose_intents(products: pd.DataFrame, max_intents: int | None, seed: int) -> IntentChoice:
    """The intents with >= 2 fully matching products, sampled down to --max-intents: what shoppers ask for."""
    counts = enumerate_intents(products)
    intents = sorted(i for i, c in counts.items() if c >= 2)
    if max_intents is None:
        n = len(products)
        max_intents = 5000 if n <= 4000 else int(5000 + 1.25 * (n - 4000))
    if len(intents) <= max_intents:
        return IntentChoice(len(intents), intents)
    by_kind: dict[str, list[Intent]] = defaultdict(list)
    for it in intents:
        by_kind[it.kind].append(it)
    # keep every type-only intent, sample the other kinds proportionally
    rest = {k: v for k, v in by_kind.items() if k != "type"}
    keep = stratified_cap(rest, max_intents - len(by_kind["type"]), rng_for(seed, "intents"))
    return IntentChoice(len(intents), sorted([*by_kind["type"], *(it for v in keep.values() for it in v)]))


# --------------------------------------------------------------------------------------------
# Surface strings
# --------------------------------------------------------------------------------------------


def slot_words(intent: Intent) -> dict[str, list[str]]:
    """The shopper words of each slot (type, colour, gender, usage) the intent fills."""
    slots = {"type": type_words(intent.article_type)}
    if intent.colour:
        slots["colour"] = colour_words(intent.colour)
    if intent.gender:
        slots["gender"] = GENDER_WORDS[intent.gender]
    if intent.usage:
        slots["usage"] = USAGE_WORDS[intent.usage]
    return slots


def orders_for(intent: Intent) -> list[list[str]]:
    """Word orders; the first is canonical. "for" marks "... for <gender>"."""
    canon = [s for s in ("gender", "colour", "usage", "type") if s == "type" or getattr(intent, s)]
    orders = [canon]
    if intent.gender and len(canon) > 2:
        rest = [s for s in canon if s != "gender"]
        orders.append([*rest, "for"])  # "black casual shirt for men"
        orders.append([*rest, "gender"])  # "black casual shirt men"
    elif intent.gender:
        orders.append(["type", "for"])  # "heels for women"
    if intent.colour and intent.usage:
        orders.append([s for s in ("gender", "usage", "colour", "type") if s in canon])
    return orders


def render(order: list[str], choice: dict[str, str], intent: Intent) -> str:
    """The query string of the chosen slot words in `order`."""
    parts = []
    for slot in order:
        if slot == "for":
            parts += ["for", GENDER_WORDS[intent.gender][0]]
        else:
            parts.append(choice[slot])
    return " ".join(parts)


def all_renderings(intent: Intent) -> set[str]:
    """Every string the intent can be written as: all word choices in all orders."""
    slots = slot_words(intent)
    names = sorted(slots)
    combos: list[dict[str, str]] = [{}]
    for name in names:
        combos = [{**c, name: w} for c in combos for w in slots[name]]
    return {render(o, c, intent) for o in orders_for(intent) for c in combos}


def draw_surface(intent: Intent, rng: random.Random) -> str:
    """One string for the intent: canonical words and order most of the time (P_CANONICAL_*), else others."""
    slots = slot_words(intent)
    choice = {}
    for name in sorted(slots):
        ws = slots[name]
        choice[name] = ws[0] if len(ws) == 1 or rng.random() < P_CANONICAL_WORD else rng.choice(ws[1:])
    orders = orders_for(intent)
    order = orders[0] if len(orders) == 1 or rng.random() < P_CANONICAL_ORDER else rng.choice(orders[1:])
    return render(order, choice, intent)


def misspell(text: str, rng: random.Random) -> str | None:
    """One realistic typo (drop, swap or double a letter, never the first) in a word of >= 5
    letters; None if the string has no such word."""
    words = text.split(" ")
    cand = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not cand:
        return None
    i = rng.choice(cand)
    w = words[i]
    op = rng.choice(["drop", "swap", "double"])
    if op == "drop":
        j = rng.randrange(1, len(w))
        new = w[:j] + w[j + 1 :]
    elif op == "swap":
        js = [j for j in range(1, len(w) - 1) if w[j] != w[j + 1]]
        if not js:
            return None
        j = rng.choice(js)
        new = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    else:
        j = rng.randrange(1, len(w))
        new = w[:j] + w[j] + w[j:]
    if new == w:
        return None
    words[i] = new
    return " ".join(words)


def derive_queries(intents: list[Intent], seed: int) -> Queries:
    """Render each intent as 1-3 query strings, some with a typo, none that could mean another intent."""
    # every way any intent can be written; a string two intents share is ambiguous: banned
    owners: dict[str, set[Intent]] = defaultdict(set)
    for it in intents:
        for s in all_renderings(it):
            owners[s].add(it)
    banned = {s for s, o in owners.items() if len(o) > 1}
    surfaces: dict[Intent, list[str]] = {}
    taken: set[str] = set()
    n_misspelt = 0
    for it in intents:
        rng = rng_for(seed, "surface", it.key)
        final = []
        for s in _draw_surfaces(it, rng, banned):
            if rng.random() < P_MISSPELL:
                typo = misspell(s, rng)
                if typo and typo not in owners and typo not in taken:  # no rendering of any intent
                    s = typo
                    n_misspelt += 1
            if s not in taken:
                final.append(s)
                taken.add(s)
        if final:
            surfaces[it] = final
    return Queries(surfaces, n_misspelt)


def _draw_surfaces(intent: Intent, rng: random.Random, banned: set[str]) -> list[str]:
    """1-3 distinct strings (N_SURFACES) of at most MAX_WORDS words rendering `intent`, none in `banned`."""
    r, acc = rng.random(), 0.0
    k = N_SURFACES[-1][0]
    for n, p in N_SURFACES:
        acc += p
        if r < acc:
            k = n
            break
    chosen: list[str] = []
    for _ in range(12 * k):
        if len(chosen) >= k:
            break
        s = draw_surface(intent, rng)
        if s in banned or s in chosen or len(s.split()) > MAX_WORDS:
            continue
        chosen.append(s)
    if not chosen:  # all drawn strings were ambiguous: try every rendering
        ok = sorted(s for s in all_renderings(intent) if s not in banned and len(s.split()) <= MAX_WORDS)
        chosen = ok[:1]
    return chosen
