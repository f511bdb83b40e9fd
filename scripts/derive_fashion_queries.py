#!/usr/bin/env python
"""Derive a MAKE-format data directory from the Fashion Product Images (Small) catalog.

The source catalog has products, photos and attributes but no shopper queries or clicks. This
script selects a subset of products (stratified over article types), simulates shopper queries
from attribute combinations ("intents": article type plus optionally colour, gender, usage),
grades the relevance of every product for every query from the attributes, splits the intents
into train/valid/test and writes:

    OUT/products.parquet   product_id, title, image, category + attribute metadata
    OUT/train.parquet      query, product_id, weight      (simulated clicks)
    OUT/valid.parquet      query, product_id, relevance   (1 or 2)
    OUT/test.parquet       query, product_id, relevance   (1 or 2)
    OUT/images/<id>.jpg    the photos of the selected products, copied from images.tar.gz
    OUT/stats.json         counts and relevance statistics
    OUT/README.md          origin, licence, command, grammar, relevance definition

Deterministic: every random choice comes from random.Random seeded with a string derived from
--seed (string seeds are hashed with SHA-512, not with the per-process randomised hash()), and
every iteration is over sorted keys. Rerunning with the same arguments gives byte-identical files.

Only pandas, pyarrow and the standard library are used.

Usage:
    python scripts/derive_fashion_queries.py --source /work/shared/data/fashion-products \\
        --out data/demo --products 4000 --seed 0
    python scripts/derive_fashion_queries.py --source ... --out /tmp/fashion-full --products 0
    python scripts/derive_fashion_queries.py --source ../shared/data/fashion-products \\
        --out runs/colour-from-photo --products 3400 --seed 0 --strip-colour

--strip-colour gives the same products, queries, grades and splits, but titles without colour and
pattern words and no base_colour column: colour queries can then only be answered from the photo.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tarfile
from collections import Counter, defaultdict
from typing import NamedTuple

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# --------------------------------------------------------------------------------------------
# Vocabulary: how a shopper types each attribute value. The first word is the canonical one.
# --------------------------------------------------------------------------------------------

TYPE_WORDS: dict[str, list[str]] = {
    "Tshirts": ["tshirt", "t-shirt", "tee", "t shirt", "tshirts"],
    "Shirts": ["shirt", "shirts"],
    "Casual Shoes": ["casual shoes", "sneakers"],
    "Watches": ["watch", "watches", "wrist watch"],
    "Sports Shoes": ["sports shoes", "running shoes", "sport shoes"],
    "Kurtas": ["kurta", "kurtas"],
    "Tops": ["top", "tops"],
    "Handbags": ["handbag", "purse", "handbags"],
    "Heels": ["heels", "high heels"],
    "Sunglasses": ["sunglasses", "shades"],
    "Wallets": ["wallet", "wallets"],
    "Flip Flops": ["flip flops", "slippers", "flipflops"],
    "Sandals": ["sandals"],
    "Briefs": ["briefs", "underwear"],
    "Belts": ["belt", "belts"],
    "Backpacks": ["backpack", "school bag", "backpacks"],
    "Socks": ["socks"],
    "Formal Shoes": ["formal shoes", "office shoes"],
    "Perfume and Body Mist": ["perfume", "body mist", "fragrance"],
    "Jeans": ["jeans", "denims"],
    "Shorts": ["shorts"],
    "Trousers": ["trousers", "pants"],
    "Flats": ["flats", "ballerinas"],
    "Bra": ["bra"],
    "Dresses": ["dress", "dresses"],
    "Sarees": ["saree", "sari"],
    "Earrings": ["earrings"],
    "Deodorant": ["deodorant", "deo"],
    "Track Pants": ["track pants", "joggers", "trackpants"],
    "Clutches": ["clutch"],
    "Sweatshirts": ["sweatshirt", "hoodie"],
    "Caps": ["cap", "caps"],
    "Nail Polish": ["nail polish", "nail paint"],
    "Sweaters": ["sweater", "pullover"],
    "Ties": ["tie"],
    "Lipstick": ["lipstick"],
    "Jackets": ["jacket"],
    "Innerwear Vests": ["vest", "innerwear vest"],
    "Kurtis": ["kurti"],
    "Tunics": ["tunic"],
    "Nightdress": ["nightdress", "nighty"],
    "Leggings": ["leggings"],
    "Pendant": ["pendant"],
    "Capris": ["capris"],
    "Necklace and Chains": ["necklace", "chain"],
    "Night suits": ["night suit", "pyjamas"],
    "Trunk": ["trunks"],
    "Skirts": ["skirt"],
    "Scarves": ["scarf"],
    "Ring": ["ring"],
    "Dupatta": ["dupatta"],
    "Lip Gloss": ["lip gloss"],
    "Cufflinks": ["cufflinks"],
    "Kajal and Eyeliner": ["kajal", "eyeliner"],
    "Kurta Sets": ["kurta set"],
    "Stoles": ["stole"],
    "Duffel Bag": ["duffel bag", "gym bag"],
    "Laptop Bag": ["laptop bag"],
    "Foundation and Primer": ["foundation", "primer"],
    "Sports Sandals": ["sports sandals"],
    "Lounge Pants": ["lounge pants"],
    "Jewellery Set": ["jewellery set", "jewelry set"],
    "Boxers": ["boxers"],
    "Face Moisturisers": ["face moisturiser", "moisturizer"],
    "Highlighter and Blush": ["blush", "highlighter"],
    "Camisoles": ["camisole"],
    "Lounge Shorts": ["lounge shorts"],
    "Jeggings": ["jeggings"],
    "Tracksuits": ["tracksuit"],
    "Gloves": ["gloves"],
    "Stockings": ["stockings"],
    "Suspenders": ["suspenders"],
    "Swimwear": ["swimwear", "swimsuit"],
    "Bath Robe": ["bathrobe", "bath robe"],
}

# Article types for which no shopper query is simulated (the products stay in the catalog).
NO_QUERY_TYPES = frozenset({"Free Gifts"})
# Types whose colour is the packaging's, not something a shopper asks for: no colour intents.
NO_COLOUR_TYPES = frozenset(
    {
        "Perfume and Body Mist",
        "Deodorant",
        "Fragrance Gift Set",
        "Face Moisturisers",
        "Sunscreen",
        "Face Wash and Cleanser",
        "Mask and Peel",
        "Body Lotion",
        "Face Serum and Gel",
        "Toner",
        "Eye Cream",
        "Face Scrub and Exfoliator",
        "Makeup Remover",
        "Body Wash and Scrub",
        "Mens Grooming Kit",
    }
)
# Master categories where "casual"/"formal"/... is not how shoppers ask: no usage intents.
NO_USAGE_MASTER = frozenset({"Personal Care", "Free Items"})
# No gender intents for an article type whose titles name no gender for more than this share of
# its products (sarees, bras, lipsticks, ...): their relevance would be unreliable.
MAX_UNKNOWN_GENDER = 0.2

COLOUR_WORDS: dict[str, list[str]] = {
    "Navy Blue": ["navy blue", "navy"],
    "Grey": ["grey", "gray"],
    "Multi": ["multicolour", "multicolor"],
    "Off White": ["off white", "off-white"],
    "Turquoise Blue": ["turquoise blue", "turquoise"],
    "Fluorescent Green": ["fluorescent green", "neon green"],
}

# Query gender -> product genders (parsed from titles) that match it.
GENDER_WORDS: dict[str, list[str]] = {
    "Men": ["men", "mens"],
    "Women": ["women", "womens"],
    "Boys": ["boys"],
    "Girls": ["girls"],
}
GENDER_MATCHES: dict[str, frozenset[str]] = {
    "Men": frozenset({"Men", "Unisex"}),
    "Women": frozenset({"Women", "Unisex"}),
    "Boys": frozenset({"Boys"}),
    "Girls": frozenset({"Girls"}),
}

USAGE_WORDS: dict[str, list[str]] = {
    "Casual": ["casual"],
    "Formal": ["formal"],
    "Sports": ["sports", "sport"],
    "Party": ["party"],
    "Ethnic": ["ethnic"],
}

# Intent kinds: which attributes besides the article type a query names.
KINDS: list[tuple[str, tuple[str, ...]]] = [
    ("type", ()),
    ("colour+type", ("colour",)),
    ("gender+type", ("gender",)),
    ("gender+colour+type", ("gender", "colour")),
    ("usage+type", ("usage",)),
    ("gender+usage+type", ("gender", "usage")),
    ("colour+usage+type", ("colour", "usage")),
    ("gender+colour+usage+type", ("gender", "colour", "usage")),
]
_KIND_OF = {attrs: kind for kind, attrs in KINDS}

# Gender words in titles -> product gender. "Mr. Men" / "Mr.Men" is a brand, removed first.
_GENDER_RE = re.compile(r"\b(men|mens|women|womens|boys?|girls?|unisex)\b", re.IGNORECASE)
_GENDER_CANON = {
    "men": "Men",
    "mens": "Men",
    "women": "Women",
    "womens": "Women",
    "boy": "Boys",
    "boys": "Boys",
    "girl": "Girls",
    "girls": "Girls",
    "unisex": "Unisex",
}
_BRAND_RE = re.compile(r"\bMr\.\s*Men\b", re.IGNORECASE)

P_CANONICAL_WORD = 0.75  # probability that a slot uses its canonical word (else a synonym)
P_CANONICAL_ORDER = 0.7  # probability of the canonical word order gender colour usage type
N_SURFACES = [(1, 0.55), (2, 0.33), (3, 0.12)]  # surface strings per intent
P_MISSPELL = 0.04  # share of surface strings that get one typo
MAX_WORDS = 4  # shoppers type 1-4 words: intents that need more are not rendered
CLICKS_PER_QUERY = 8
TRAIN_FRAC, VALID_FRAC = 0.7, 0.1


class Intent(NamedTuple):
    article_type: str
    colour: str = ""
    gender: str = ""
    usage: str = ""

    @property
    def kind(self) -> str | None:
        """The intent kind (a name in KINDS), or None for a combination not in KINDS."""
        return _KIND_OF.get(tuple(a for a in ("gender", "colour", "usage") if getattr(self, a)))

    @property
    def key(self) -> str:
        return f"{self.article_type}|{self.colour}|{self.gender}|{self.usage}"


def rng_for(seed: int, *parts: str) -> random.Random:
    # String seeds are hashed with SHA-512 by random.seed (version 2): stable across processes.
    return random.Random("|".join([str(seed), *parts]))


def parse_gender(title: str) -> str | None:
    m = _GENDER_RE.search(_BRAND_RE.sub(" ", title))
    return _GENDER_CANON[m.group(1).lower()] if m else None


def type_words(article_type: str) -> list[str]:
    if article_type in TYPE_WORDS:
        return TYPE_WORDS[article_type]
    words = article_type.lower().split()
    last = words[-1]
    if last.endswith("s") and not last.endswith(("ss", "us")) and len(last) > 3:
        words[-1] = last[:-1]
    return [" ".join(words)]


def colour_words(colour: str) -> list[str]:
    return COLOUR_WORDS.get(colour, [colour.lower()])


# --------------------------------------------------------------------------------------------
# --strip-colour: colour and pattern words removed from titles, so that only the photo shows them
# --------------------------------------------------------------------------------------------

# Colour names in titles besides the words of the catalog's base_colour values and COLOUR_WORDS
# (shades, typos, run-together forms), chosen from the real titles.
EXTRA_COLOUR_WORDS = frozenset(
    {
        "golden",
        "gunmetal",
        "metalic",
        "sliver",
        "offwhite",
        "multicolored",
        "multicoloured",
        "indigo",
        "ivory",
        "coral",
        "aqua",
        "wine",
        "plum",
        "lemon",
        "mint",
        "fuchsia",
        "fushia",
        "fuschia",
        "violet",
        "crimson",
        "chocolate",
        "heather",
        "blues",
        "camel",
        "choco",
        "caramel",
        "cherry",
        "berry",
        "raspberry",
        "grape",
    }
)
# Removed only right before a removed colour word ("light blue", "off white", "sea green",
# "gun metal grey"): alone they are other words ("Off Shoulder", "Sky Ball").
COLOUR_MODIFIERS = frozenset(
    {
        "light",
        "lt",
        "dark",
        "dk",
        "deep",
        "bright",
        "pale",
        "sky",
        "sea",
        "off",
        "neon",
        "royal",
        "baby",
        "dusky",
        "gun",
    }
)
# Removed only right after a removed colour word ("Multi Coloured", "Gold-Toned", "Gold Colour").
COLOUR_SUFFIXES = frozenset({"coloured", "colored", "colour", "color", "toned", "tone", "shade"})
PATTERN_WORDS = frozenset(
    {
        "printed",
        "print",
        "prints",
        "solid",
        "check",
        "checks",
        "chk",
        "checked",
        "checkered",
        "checkerd",
        "striped",
        "stripes",
        "stripe",
        "striper",
        "stripper",
        "stripped",
        "strips",
        "pinstripe",
        "pinstriped",
        "graphic",
        "melange",
        "floral",
        "florals",
        "polka",
        "dot",
        "dots",
        "dotted",
        "gingham",
        "plaid",
        "plaids",
        "plaided",
        "tartan",
        "camouflage",
        "camo",
        "leopard",
        "zebra",
        "chevron",
        "paisley",
        "abstract",
        "geometric",
        "ombre",
        "textured",
        "patterned",
        "pattern",
        "colourblocked",
        "colorblocked",
        "colourblock",
        "colorblock",
        "embroidered",
        "embroidery",
        "embroided",
        "embroidary",
        "kalamkari",
        "ajrakh",
        "ikat",
        "batik",
        "bandhani",
        "leheriya",
        "houndstooth",
        "argyle",
        "herringbone",
        "heathered",
        "halftone",
        "dye",
        "dyed",
    }
)
# Removed only right before a removed pattern word ("Flower Print", "Self Striped", "Yarn Dyed").
PATTERN_MODIFIERS = frozenset({"flower", "animal", "self", "yarn", "dip", "garment", "tie"})
# Multi-word patterns and colours, matched on consecutive words.
STRIP_PHRASES: dict[tuple[str, ...], str] = {
    ("self", "design"): "pattern",
    ("tie", "and", "dye"): "pattern",
    ("tie", "&", "dye"): "pattern",
    ("tie", "n", "dye"): "pattern",
    ("colour", "block"): "pattern",
    ("color", "block"): "pattern",
    ("colour", "blocked"): "pattern",
    ("color", "blocked"): "pattern",
    ("gun", "metal"): "colour",
}
# Brand names whose words would otherwise be EXTRA_COLOUR_WORDS: kept. (Brand words that are
# base colours, e.g. "Red Tape", "Red Rose", are removed like any colour word.)
KEEP_PHRASES = frozenset({("indigo", "nation"), ("ivory", "tag"), ("miami", "blues")})
# Colour words that are the product's noun in titles of NO_COLOUR_TYPES ("Day Cream", "Skin
# Polisher"), which get no colour queries: kept there.
NO_COLOUR_KEEP = frozenset({"cream", "skin"})
# "Multi-Dial", "multi function": not a colour.
MULTI_NOT_COLOUR = frozenset({"dial", "function", "functional", "purpose", "utility", "pack", "pocket"})
# Between two removed words: removed too ("Black & White Striped").
COLOUR_JOINERS = frozenset({"&", "and", "/", "n", "+"})
_SUBWORD_RE = re.compile(r"([-/.+&])")
_CORE_STRIP = "()[]{},;:!?\"'*"


def colour_vocabulary(base_colours) -> frozenset[str]:
    """Single words removed by --strip-colour as colours: every word of the catalog's base_colour
    values and of COLOUR_WORDS, plus EXTRA_COLOUR_WORDS, less COLOUR_MODIFIERS ("off", "sea")."""
    words = set(EXTRA_COLOUR_WORDS)
    for c in base_colours:
        words.update(c.lower().split())
    for syns in COLOUR_WORDS.values():
        for s in syns:
            words.update(w for w in re.split(r"[\s-]+", s) if w)
    return frozenset(w for w in words if w and w not in COLOUR_MODIFIERS)


def _classify(cores: list[str], vocab: frozenset[str]) -> list[str]:
    """Per word: "colour", "pattern", "cmod", "pmod", "suffix", "joiner" or "word"."""
    n = len(cores)
    kinds = ["word"] * n
    for i, c in enumerate(cores):
        if c in vocab:
            kinds[i] = "colour"
        elif c in PATTERN_WORDS:
            kinds[i] = "pattern"
        elif c in COLOUR_MODIFIERS:
            kinds[i] = "cmod"
        elif c in PATTERN_MODIFIERS:
            kinds[i] = "pmod"
        elif c in COLOUR_SUFFIXES:
            kinds[i] = "suffix"
        elif c in COLOUR_JOINERS:
            kinds[i] = "joiner"
        if c == "multi" and i + 1 < n and cores[i + 1] in MULTI_NOT_COLOUR:
            kinds[i] = "word"
    for phrase, kind in sorted(STRIP_PHRASES.items()):
        k = len(phrase)
        for i in range(n - k + 1):
            if tuple(cores[i : i + k]) == phrase:
                kinds[i : i + k] = [kind] * k
    for phrase in sorted(KEEP_PHRASES):
        k = len(phrase)
        for i in range(n - k + 1):
            if tuple(cores[i : i + k]) == phrase:
                kinds[i : i + k] = ["word"] * k
    return kinds


def _words(title: str) -> list[tuple[int, str, str]]:
    """(whitespace token index, separator before it inside the token, text) per word; a token
    like "Off-White" or "Chinosdk.Cream" is split into its words."""
    out = []
    for ti, tok in enumerate(title.split()):
        parts = _SUBWORD_RE.split(tok)
        sep = ""
        for p in parts:
            if _SUBWORD_RE.fullmatch(p):
                sep += p
            elif p:
                out.append((ti, sep, p))
                sep = ""
        if sep and not any(o[0] == ti for o in out):  # a token of separators only ("/", "+")
            out.append((ti, "", sep))
    return out


def _removed(cores: list[str], vocab: frozenset[str]) -> list[bool]:
    kinds = _classify(cores, vocab)
    rm = [k in ("colour", "pattern") for k in kinds]
    changed = True
    while changed:
        changed = False
        for i, k in enumerate(kinds):
            if rm[i]:
                continue
            nxt = i + 1 < len(kinds) and rm[i + 1]
            prev = i > 0 and rm[i - 1]
            if (
                (k == "cmod" and nxt and kinds[i + 1] in ("colour", "cmod"))
                or (k == "pmod" and nxt and kinds[i + 1] in ("pattern", "pmod"))
                or (k == "suffix" and prev and kinds[i - 1] in ("colour", "suffix"))
                or (k == "joiner" and prev and nxt)
            ):
                rm[i] = changed = True
    return rm


def _core(text: str) -> str:
    return text.lower().strip(_CORE_STRIP)


def strip_colour(title: str, vocab: frozenset[str]) -> str:
    """The title without colour and pattern words (whole words, case-insensitive), whitespace
    collapsed: "Titan Women Silver Watch" -> "Titan Women Watch", "Puma Men Navy Blue & White
    Striped Polo T-shirt" -> "Puma Men Polo T-shirt"."""
    words = _words(title)
    rm = _removed([_core(w) for _, _, w in words], vocab)
    hit = {ti for (ti, _, _), r in zip(words, rm, strict=True) if r}
    tokens = {ti: tok for ti, tok in enumerate(title.split()) if ti not in hit}  # untouched: verbatim
    for (ti, sep, w), r in zip(words, rm, strict=True):
        if ti in hit and not r:
            tokens[ti] = tokens[ti] + sep + w if ti in tokens else w
    return " ".join(tokens[ti] for ti in sorted(tokens))


def colour_words_in(title: str, vocab: frozenset[str]) -> list[str]:
    """The colour and pattern words that strip_colour would remove from `title`."""
    words = _words(title)
    rm = _removed([_core(w) for _, _, w in words], vocab)
    return [w for (_, _, w), r in zip(words, rm, strict=True) if r]


def strip_titles(titles: list[str], article_types: list[str], catalog_colours: list[str]) -> tuple[list[str], dict]:
    """--strip-colour on every title, with statistics. In titles of NO_COLOUR_TYPES (skin care,
    fragrances: no colour queries) the product nouns of NO_COLOUR_KEEP stay ("Night Cream", "Skin
    Polisher"). A title left empty becomes its article type. `titles_with_query_colour_word_after`
    searches, independently of strip_colour, every colour word a query can contain (colour_words of
    each base colour) as a whole word, in the titles of the types that get colour queries."""
    vocab = colour_vocabulary(catalog_colours)
    vocab_no_colour_type = vocab - NO_COLOUR_KEEP
    query_colours = sorted({w for c in catalog_colours for w in colour_words(c)})
    query_re = re.compile(r"(?<![a-z])(" + "|".join(re.escape(w) for w in query_colours) + r")(?![a-z])")
    out, removed, n_empty, n_before, n_after, nq_before, nq_after, n_kept = [], Counter(), 0, 0, 0, 0, 0, 0
    for title, t in zip(titles, article_types, strict=True):
        v = vocab_no_colour_type if t in NO_COLOUR_TYPES else vocab
        words = colour_words_in(title, v)
        removed.update(_core(w) for w in words)
        new = strip_colour(title, v)
        if not new:
            new, n_empty = t, n_empty + 1
        out.append(new)
        n_before += bool(words)
        n_after += bool(colour_words_in(new, v))
        if t in NO_COLOUR_TYPES:
            n_kept += bool(colour_words_in(new, vocab))
        else:
            nq_before += bool(query_re.search(title.lower()))
            nq_after += bool(query_re.search(new.lower()))
    n_words = [len(t.split()) for t in titles]
    n_words_after = [len(t.split()) for t in out]
    stats = {
        "titles_changed": sum(a != " ".join(b.split()) for a, b in zip(out, titles, strict=True)),
        "titles_with_colour_or_pattern_word_before": n_before,
        "titles_with_colour_or_pattern_word_after": n_after,
        "titles_with_query_colour_word_before": nq_before,
        "titles_with_query_colour_word_after": nq_after,
        "no_colour_type_titles_keeping_a_product_noun": n_kept,
        "titles_emptied_replaced_by_article_type": n_empty,
        "title_words_mean_before": round(statistics.fmean(n_words), 2) if n_words else 0,
        "title_words_mean_after": round(statistics.fmean(n_words_after), 2) if n_words else 0,
        "removed_words": dict(sorted(removed.items(), key=lambda kv: (-kv[1], kv[0]))),
        "colour_words": sorted(vocab),
        "pattern_words": sorted(PATTERN_WORDS),
    }
    return out, stats


def usage_in_type_name(article_type: str) -> bool:
    """True for types like "Casual Shoes": a usage query on top would repeat the word."""
    name = article_type.lower().split()
    return any(u.lower() in name for u in USAGE_WORDS)


def allocate(counts: dict[str, int], total: int, floor: int) -> dict[str, int]:
    """Proportional allocation of `total` over keys with a floor, capped at counts (largest
    remainder, ties broken by key)."""
    keys = sorted(counts)
    if total >= sum(counts.values()):
        return dict(counts)
    floor = min(floor, total // max(1, len(keys)))
    alloc = {k: min(counts[k], floor) for k in keys}
    while True:
        left = total - sum(alloc.values())
        open_keys = [k for k in keys if alloc[k] < counts[k]]
        if left <= 0 or not open_keys:
            return alloc
        weight = sum(counts[k] - alloc[k] for k in open_keys)
        shares = {k: left * (counts[k] - alloc[k]) / weight for k in open_keys}
        add = {k: min(int(shares[k]), counts[k] - alloc[k]) for k in open_keys}
        if sum(add.values()) == 0:
            order = sorted(open_keys, key=lambda k: (-(shares[k] - int(shares[k])), k))
            for k in order[:left]:
                alloc[k] += 1
            continue
        for k in open_keys:
            alloc[k] += add[k]


def sample_sorted(rng: random.Random, items: list, k: int) -> list:
    items = sorted(items)
    if k >= len(items):
        return items
    return sorted(rng.sample(items, k))


# --------------------------------------------------------------------------------------------
# Surface strings
# --------------------------------------------------------------------------------------------


def slot_words(intent: Intent) -> dict[str, list[str]]:
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
    parts = []
    for slot in order:
        if slot == "for":
            parts += ["for", GENDER_WORDS[intent.gender][0]]
        else:
            parts.append(choice[slot])
    return " ".join(parts)


def all_renderings(intent: Intent) -> set[str]:
    slots = slot_words(intent)
    names = sorted(slots)
    combos: list[dict[str, str]] = [{}]
    for name in names:
        combos = [{**c, name: w} for c in combos for w in slots[name]]
    return {render(o, c, intent) for o in orders_for(intent) for c in combos}


def draw_surface(intent: Intent, rng: random.Random) -> str:
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


# --------------------------------------------------------------------------------------------
# Main steps
# --------------------------------------------------------------------------------------------


def image_ids_in_tar(tar_path: str) -> set[str]:
    ids = set()
    with tarfile.open(tar_path, "r:gz") as tf:
        for m in tf:
            if m.isfile() and m.size > 0:
                mt = re.fullmatch(r"(?:\./)?images/([^/]+)\.jpg", m.name)
                if mt:
                    ids.add(mt.group(1))
    return ids


def copy_images(tar_path: str, wanted: set[str], out_dir: str) -> int:
    os.makedirs(out_dir, exist_ok=True)
    done = set()
    with tarfile.open(tar_path, "r:gz") as tf:
        for m in tf:
            if not m.isfile():
                continue
            mt = re.fullmatch(r"(?:\./)?images/([^/]+)\.jpg", m.name)
            if not mt or mt.group(1) not in wanted or mt.group(1) in done:
                continue
            data = tf.extractfile(m).read()
            if not data.startswith(b"\xff\xd8"):
                raise SystemExit(f"{m.name} in {tar_path} is not a JPEG")
            with open(os.path.join(out_dir, mt.group(1) + ".jpg"), "wb") as f:
                f.write(data)
            done.add(mt.group(1))
    missing = wanted - done
    if missing:
        raise SystemExit(f"{len(missing)} images missing from {tar_path}, e.g. {sorted(missing)[:3]}")
    return len(done)


def select_products(df: pd.DataFrame, n: int, seed: int, min_type: int, floor: int) -> pd.DataFrame:
    if n == 0:
        return df
    by_type: dict[str, list[str]] = defaultdict(list)
    for pid, t in zip(df["product_id"], df["article_type"], strict=True):
        by_type[t].append(pid)
    counts = {t: len(v) for t, v in by_type.items() if len(v) >= min_type}
    avail = sum(counts.values())
    if n > avail:
        raise SystemExit(f"--products {n} exceeds the {avail} products of article types with >= {min_type} products")
    alloc = allocate(counts, n, floor)
    chosen: list[str] = []
    for t in sorted(alloc):
        chosen += sample_sorted(rng_for(seed, "select", t), by_type[t], alloc[t])
    return df[df["product_id"].isin(set(chosen))]


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


def grade(intent: Intent, colour: str, gender: str | None, usage: str) -> int:
    """2 = matches every attribute, 1 = type plus some (not all) others, 0 = not relevant.
    The caller only passes products of the intent's article type."""
    checks = []
    if intent.colour:
        checks.append(colour == intent.colour)
    if intent.gender:
        checks.append(gender is not None and gender in GENDER_MATCHES[intent.gender])
    if intent.usage:
        checks.append(usage == intent.usage)
    hit = sum(checks)
    if hit == len(checks):
        return 2
    return 1 if hit >= 1 else 0


def stratified_cap(items_by_kind: dict[str, list], cap: int, rng: random.Random) -> dict[str, list]:
    counts = {k: len(v) for k, v in items_by_kind.items() if v}
    alloc = allocate(counts, cap, floor=0)
    return {k: sample_sorted(rng, items_by_kind[k], alloc.get(k, 0)) for k in sorted(items_by_kind)}


def write_table(path: str, columns: dict[str, list], schema: pa.Schema) -> None:
    table = pa.Table.from_pydict(columns, schema=schema)
    pq.write_table(table, path, compression="zstd", write_statistics=False)


def describe(values: list[int]) -> dict:
    if not values:
        return {"mean": 0, "median": 0, "max": 0, "min": 0}
    return {
        "mean": round(statistics.fmean(values), 2),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--source", required=True, help="dir with products.parquet and images.tar.gz")
    ap.add_argument("--out", required=True, help="output data directory")
    ap.add_argument("--products", type=int, default=4000, help="products to select; 0 = all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--min-type-count",
        type=int,
        default=15,
        help="article types with fewer source products are left out of a subset",
    )
    ap.add_argument("--type-floor", type=int, default=12, help="minimum products per article type in a subset")
    ap.add_argument(
        "--max-intents",
        type=int,
        default=None,
        help="intents to keep (default 5000, or 1.25 per product above 4000 products)",
    )
    ap.add_argument(
        "--valid-queries", type=int, default=None, help="cap on valid queries (default: half of the test cap)"
    )
    ap.add_argument(
        "--test-queries",
        type=int,
        default=None,
        help="cap on test queries (default 600, up to 2000 for larger catalogs)",
    )
    ap.add_argument(
        "--strip-colour",
        action="store_true",
        help="remove colour and pattern words from titles and leave base_colour out of products.parquet, so that "
        "colour queries can only be answered from the photo (queries, grades and splits are unchanged)",
    )
    args = ap.parse_args(argv)
    if args.products < 0:
        ap.error("--products must be >= 0")
    seed = args.seed

    src_parquet = os.path.join(args.source, "products.parquet")
    src_tar = os.path.join(args.source, "images.tar.gz")
    for p in (src_parquet, src_tar):
        if not os.path.isfile(p):
            raise SystemExit(f"missing {p}")

    # ---- products ---------------------------------------------------------------------------
    df = pd.read_parquet(src_parquet)
    need = ["product_id", "title", "master_category", "sub_category", "article_type", "base_colour", "usage"]
    lacking = [c for c in need if c not in df.columns]
    if lacking:
        raise SystemExit(f"{src_parquet} lacks columns {lacking}")
    df = df[need].copy()
    for c in need:
        df[c] = df[c].astype(object).where(df[c].notna(), "").map(str).str.strip()
    df = df.drop_duplicates("product_id").sort_values("product_id", kind="mergesort")
    n_source = len(df)
    catalog_colours = sorted(set(df["base_colour"]) - {""})
    have_img = image_ids_in_tar(src_tar)
    df = df[df["product_id"].isin(have_img)]
    n_with_image = len(df)

    sel = select_products(df, args.products, seed, args.min_type_count, args.type_floor)
    sel = sel.sort_values("product_id", kind="mergesort").reset_index(drop=True)
    sel["gender"] = pd.Series([parse_gender(t) for t in sel["title"]], dtype=object)
    n_prod = len(sel)

    # ---- intents ----------------------------------------------------------------------------
    counts = enumerate_intents(sel)
    intents = sorted(i for i, c in counts.items() if c >= 2)
    n_candidates = len(intents)
    by_kind: dict[str, list[Intent]] = defaultdict(list)
    for it in intents:
        by_kind[it.kind].append(it)
    max_intents = args.max_intents
    if max_intents is None:
        max_intents = 5000 if n_prod <= 4000 else int(5000 + 1.25 * (n_prod - 4000))
    if len(intents) > max_intents:
        # keep every type-only intent, sample the other kinds proportionally
        keep = {"type": by_kind["type"]}
        rest = {k: v for k, v in by_kind.items() if k != "type"}
        keep.update(stratified_cap(rest, max_intents - len(keep["type"]), rng_for(seed, "intents")))
        by_kind = defaultdict(list, {k: v for k, v in keep.items() if v})

    # ---- surface strings ----------------------------------------------------------------------
    kept = sorted(it for v in by_kind.values() for it in v)
    # every way any kept intent can be written; a string two intents share is ambiguous: banned
    owners: dict[str, set[Intent]] = defaultdict(set)
    for it in kept:
        for s in all_renderings(it):
            owners[s].add(it)
    banned = {s for s, o in owners.items() if len(o) > 1}
    universe = set(owners)

    surfaces: dict[Intent, list[str]] = {}
    taken: set[str] = set()
    n_misspelt = 0
    for it in kept:
        rng = rng_for(seed, "surface", it.key)
        r, acc = rng.random(), 0.0
        k = N_SURFACES[-1][0]
        for n, p in N_SURFACES:
            acc += p
            if r < acc:
                k = n
                break
        limit = MAX_WORDS
        chosen: list[str] = []
        for _ in range(12 * k):
            if len(chosen) >= k:
                break
            s = draw_surface(it, rng)
            if s in banned or s in chosen or len(s.split()) > limit:
                continue
            chosen.append(s)
        if not chosen:  # all drawn strings were ambiguous: try every rendering
            ok = sorted(s for s in all_renderings(it) if s not in banned and len(s.split()) <= limit)
            chosen = ok[:1]
        final = []
        for s in chosen:
            if rng.random() < P_MISSPELL:
                typo = misspell(s, rng)
                if typo and typo not in universe and typo not in taken:
                    s = typo
                    n_misspelt += 1
            if s not in taken:
                final.append(s)
                taken.add(s)
        if final:
            surfaces[it] = final
    kept = sorted(surfaces)

    # ---- split by intent, per kind ----------------------------------------------------------
    split_of: dict[Intent, str] = {}
    for kind, _ in KINDS:
        items = sorted(it for it in kept if it.kind == kind)
        rng_for(seed, "split", kind).shuffle(items)
        n_tr = round(TRAIN_FRAC * len(items))
        n_va = round(VALID_FRAC * len(items))
        for i, it in enumerate(items):
            split_of[it] = "train" if i < n_tr else "valid" if i < n_tr + n_va else "test"

    # ---- relevance --------------------------------------------------------------------------
    # index: (article type, attribute, value) -> product ids; relevance = set algebra
    index: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for pid, t, c, g, u in zip(
        sel["product_id"], sel["article_type"], sel["base_colour"], sel["gender"], sel["usage"], strict=True
    ):
        index[(t, "type", "")].add(pid)
        index[(t, "colour", c)].add(pid)
        for q, m in GENDER_MATCHES.items():
            if g in m:
                index[(t, "gender", q)].add(pid)
        index[(t, "usage", u)].add(pid)

    def relevant(it: Intent) -> list[tuple[str, int]]:
        """(product_id, grade) sorted by product_id; see grade() for the definition."""
        t = it.article_type
        sets = [index.get((t, a, getattr(it, a)), set()) for a in ("colour", "gender", "usage") if getattr(it, a)]
        if not sets:
            return [(pid, 2) for pid in sorted(index[(t, "type", "")])]
        rel2 = set.intersection(*sets)
        rel1 = set.union(*sets) - rel2
        return sorted([(pid, 2) for pid in rel2] + [(pid, 1) for pid in rel1])

    test_cap = args.test_queries
    if test_cap is None:
        test_cap = max(600, min(2000, 600 * n_prod // 4000))
    valid_cap = args.valid_queries if args.valid_queries is not None else test_cap // 2

    rows: dict[str, list[tuple]] = {"train": [], "valid": [], "test": []}
    queries_by_split_kind: dict[str, dict[str, list[tuple[str, Intent]]]] = {s: defaultdict(list) for s in rows}
    for it in kept:
        for s in surfaces[it]:
            queries_by_split_kind[split_of[it]][it.kind].append((s, it))

    n_intents = {s: len({it for v in queries_by_split_kind[s].values() for _, it in v}) for s in rows}
    for q, it in sorted(q for v in queries_by_split_kind["train"].values() for q in v):
        rel2 = [pid for pid, r in relevant(it) if r == 2]
        for pid in sample_sorted(rng_for(seed, "clicks", q), rel2, CLICKS_PER_QUERY):
            rows["train"].append((q, pid, 1.0))
    eval_queries: dict[str, list[tuple[str, Intent]]] = {}
    for split, cap in (("valid", valid_cap), ("test", test_cap)):
        capped = stratified_cap(queries_by_split_kind[split], cap, rng_for(seed, "cap", split))
        eval_queries[split] = sorted(q for v in capped.values() for q in v)
        for q, it in eval_queries[split]:
            for pid, r in relevant(it):
                rows[split].append((q, pid, r))

    # cross-check the set algebra against the per-product definition on some eval queries
    attrs = {
        pid: (c, g, u)
        for pid, c, g, u in zip(sel["product_id"], sel["base_colour"], sel["gender"], sel["usage"], strict=True)
    }
    for _, it in (eval_queries["valid"] + eval_queries["test"])[:200]:
        direct = sorted((pid, r) for pid in index[(it.article_type, "type", "")] if (r := grade(it, *attrs[pid])))
        assert direct == relevant(it), it

    train_q = {r[0] for r in rows["train"]}
    valid_q = {r[0] for r in rows["valid"]}
    test_q = {r[0] for r in rows["test"]}
    assert not (train_q & valid_q) and not (train_q & test_q) and not (valid_q & test_q)
    train_intents = {it for v in queries_by_split_kind["train"].values() for _, it in v}
    for split in ("valid", "test"):
        assert not any(it in train_intents for _, it in eval_queries[split])

    # ---- write ------------------------------------------------------------------------------
    out = args.out
    os.makedirs(out, exist_ok=True)
    img_dir = os.path.join(out, "images")
    if os.path.isdir(img_dir):
        shutil.rmtree(img_dir)
    n_images = copy_images(src_tar, set(sel["product_id"]), img_dir)

    titles = list(sel["title"])
    strip_stats = None
    if args.strip_colour:
        titles, strip_stats = strip_titles(titles, list(sel["article_type"]), catalog_colours)
    product_cols = [
        "product_id",
        "title",
        "image",
        "category",
        "master_category",
        "sub_category",
        "article_type",
        "base_colour",
        "usage",
        "gender",
    ]
    if args.strip_colour:
        product_cols.remove("base_colour")
    s = pa.string()
    product_data = {
        "product_id": list(sel["product_id"]),
        "title": titles,
        "image": [f"images/{pid}.jpg" for pid in sel["product_id"]],
        "category": list(sel["article_type"]),
        "master_category": list(sel["master_category"]),
        "sub_category": list(sel["sub_category"]),
        "article_type": list(sel["article_type"]),
        "base_colour": list(sel["base_colour"]),
        "usage": [u or None for u in sel["usage"]],
        "gender": list(sel["gender"]),
    }
    write_table(
        os.path.join(out, "products.parquet"),
        {c: product_data[c] for c in product_cols},
        pa.schema([(c, s) for c in product_cols]),
    )
    write_table(
        os.path.join(out, "train.parquet"),
        {
            "query": [r[0] for r in rows["train"]],
            "product_id": [r[1] for r in rows["train"]],
            "weight": [r[2] for r in rows["train"]],
        },
        pa.schema([("query", s), ("product_id", s), ("weight", pa.float64())]),
    )
    for split in ("valid", "test"):
        write_table(
            os.path.join(out, f"{split}.parquet"),
            {
                "query": [r[0] for r in rows[split]],
                "product_id": [r[1] for r in rows[split]],
                "relevance": [r[2] for r in rows[split]],
            },
            pa.schema([("query", s), ("product_id", s), ("relevance", pa.int64())]),
        )

    # ---- stats ------------------------------------------------------------------------------
    def per_query(split: str) -> dict:
        n_all: Counter = Counter()
        n_2: Counter = Counter()
        for q, _, r in rows[split]:
            n_all[q] += 1
            if r == 2:
                n_2[q] += 1
        qs = sorted(n_all)
        return {"relevant": describe([n_all[q] for q in qs]), "relevance_2": describe([n_2[q] for q in qs])}

    covered_types = sorted(set(sel["article_type"]))
    queried_types = sorted({it.article_type for it in kept})
    stats = {
        "source_products": n_source,
        "source_products_with_image": n_with_image,
        "products": n_prod,
        "images": n_images,
        "article_types": len(covered_types),
        "article_types_with_queries": len(queried_types),
        "genders": {g if g else "none": int(n) for g, n in sorted(Counter(x or "" for x in sel["gender"]).items())},
        "candidate_intents": n_candidates,
        "intents": {sp: n_intents[sp] for sp in rows},
        "intents_by_kind": {
            kind: {sp: len({it for _, it in queries_by_split_kind[sp][kind]}) for sp in rows} for kind, _ in KINDS
        },
        "queries": {"train": len(train_q), "valid": len(valid_q), "test": len(test_q)},
        "queries_before_cap": {sp: sum(len(v) for v in queries_by_split_kind[sp].values()) for sp in ("valid", "test")},
        "test_queries_by_kind": dict(sorted(Counter(it.kind for _, it in eval_queries["test"]).items())),
        "misspelt_surfaces": n_misspelt,
        "pairs": {sp: len(rows[sp]) for sp in rows},
        "train_clicks_per_query": describe(list(Counter(r[0] for r in rows["train"]).values())),
        "valid": per_query("valid"),
        "test": per_query("test"),
        "article_types_covered": covered_types,
    }
    if strip_stats is not None:
        stats["strip_colour"] = True
        stats["colour_strip"] = strip_stats
    with open(os.path.join(out, "stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=1, sort_keys=False)
        f.write("\n")

    cmd = (
        f"python scripts/derive_fashion_queries.py --source {args.source} --out {args.out} "
        f"--products {args.products} --seed {seed}"
    )
    for flag, val, default in (
        ("--min-type-count", args.min_type_count, 15),
        ("--type-floor", args.type_floor, 12),
        ("--max-intents", args.max_intents, None),
        ("--valid-queries", args.valid_queries, None),
        ("--test-queries", args.test_queries, None),
    ):
        if val != default:
            cmd += f" {flag} {val}"
    if args.strip_colour:
        cmd += " --strip-colour"
    examples = [q for q, _ in eval_queries["test"]]
    ex = sample_sorted(rng_for(seed, "readme"), examples, 12)
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(readme_text(stats, cmd, ex, args.products, valid_cap, test_cap, strip_stats))

    # ---- summary ----------------------------------------------------------------------------
    size = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(out) for fn in fns)
    print(
        f"products {n_prod} (of {n_with_image} with image), article types {len(covered_types)} "
        f"({len(queried_types)} with queries)"
    )
    print(
        f"intents: {n_candidates} candidates, kept train {n_intents['train']} / valid "
        f"{n_intents['valid']} / test {n_intents['test']}"
    )
    print(f"queries: train {len(train_q)}, valid {len(valid_q)}, test {len(test_q)}; misspelt surfaces {n_misspelt}")
    print(f"pairs: train {len(rows['train'])}, valid {len(rows['valid'])}, test {len(rows['test'])}")
    print(
        f"relevant per test query: mean {stats['test']['relevant']['mean']}, median "
        f"{stats['test']['relevant']['median']}, max {stats['test']['relevant']['max']}; "
        f"relevance-2 mean {stats['test']['relevance_2']['mean']}"
    )
    if strip_stats is not None:
        print(
            f"--strip-colour: {strip_stats['titles_changed']} titles changed, words per title "
            f"{strip_stats['title_words_mean_before']} -> {strip_stats['title_words_mean_after']}, titles with a "
            f"query colour word left: {strip_stats['titles_with_query_colour_word_after']}"
        )
    print(f"wrote {out}: {size / 1e6:.2f} MB in files")
    return 0


def readme_text(
    st: dict, cmd: str, examples: list[str], n_req: int, valid_cap: int, test_cap: int, strip: dict | None = None
) -> str:
    kinds = "\n".join(
        f"| {k} | " + " | ".join(str(st["intents_by_kind"][k][s]) for s in ("train", "valid", "test")) + " |"
        for k, _ in KINDS
    )
    subset = (
        "the whole catalog (every product with an image)"
        if n_req == 0
        else f"{st['products']} products, stratified over article types: every article type with "
        f">= 15 products in the source is represented, proportionally to its size with a floor "
        f"of 12 products per type (random.Random, seeded)"
    )
    ex = "\n".join(f"- `{q}`" for q in examples)
    q, pairs, n_qtypes = st["queries"], st["pairs"], st["article_types_with_queries"]

    def fmt(d: dict) -> str:
        return f"mean {d['mean']}, median {d['median']}, max {d['max']}"

    base_colour_col = "`base_colour`, " if strip is None else ""
    strip_section = "" if strip is None else strip_readme_text(strip)

    return f"""# Fashion products with simulated shopper queries

A data directory in the format of METHOD.md ("Formats"): real fashion products with photos and
titles, and **simulated** shopper queries with **graded relevance derived from catalog attributes**
(no real clicks or human judgements exist for this catalog).

## Origin and licence
Products, titles, attributes and photos (60x80 JPEG) come from the "Fashion Product Images (Small)"
data set (Param Aggarwal, published on Kaggle; MIT licence as published there), 44,072 products of an
Indian e-commerce catalog. Queries, clicks, relevance grades and the gender column are derived by
`scripts/derive_fashion_queries.py` of this repository (deterministic; rerunning gives byte-identical
files):

    {cmd}

Subset: {subset}. Only products whose image is in the source archive are used.

## Files
- `products.parquet`: `product_id`, `title`, `image` (`images/<product_id>.jpg`), `category`
  (= `article_type`, for per-category metrics), `master_category`, `sub_category`, `article_type`,
  {base_colour_col}`usage`, `gender` (parsed from the title: Men/Women/Boys/Girls/Unisex, the first such
  word after removing the brand "Mr. Men"; null if none). Sorted by `product_id`.
- `train.parquet`: `query`, `product_id`, `weight` (1.0): simulated clicks.
- `valid.parquet`, `test.parquet`: `query`, `product_id`, `relevance` (1 or 2); products not listed
  are not relevant.
- `images/`: one JPEG per product.
- `stats.json`: counts and relevance statistics; `README.md`: this file.

## Counts
- products: {st["products"]}, article types: {st["article_types"]} ({n_qtypes} with queries)
- queries: {q["train"]} train, {q["valid"]} valid, {q["test"]} test
- pairs: {pairs["train"]} train clicks, {pairs["valid"]} valid, {pairs["test"]} test
- relevant products per test query: {fmt(st["test"]["relevant"])}; relevance 2 only:
  {fmt(st["test"]["relevance_2"])}
- relevant products per valid query: {fmt(st["valid"]["relevant"])}; relevance 2 only:
  {fmt(st["valid"]["relevance_2"])}
- clicks per train query: {fmt(st["train_clicks_per_query"])}

Intents (attribute sets) per split:

| kind | train | valid | test |
|---|---|---|---|
{kinds}

## Query grammar
A query renders an *intent*: an article type plus optionally a colour, a gender and a usage, in one
of the kinds type; colour+type; gender+type; gender+colour+type; usage+type; gender+usage+type;
colour+usage+type; gender+colour+usage+type. Intents are enumerated from the attribute
combinations present in the catalog and kept if at least 2 products match all their attributes.
Usage intents are not made for types whose name already states a usage (Casual/Formal/Sports
Shoes, Sports Sandals) nor for Personal Care; colour intents are not made for fragrances and skin
care (the colour is the packaging's); no gender intents are made for article types whose titles
name no gender for more than 20% of their products (e.g. sarees, bras, lipsticks); no queries
are made for "Free Gifts".

- article type: a shopper word from a hand-written synonym table ("Tshirts" -> tshirt, t-shirt,
  tee, t shirt; "Casual Shoes" -> casual shoes, sneakers; "Trousers" -> trousers, pants; ...), other
  types lowercased with a simple singular;
- colour: lowercased base colour ("Navy Blue" -> navy blue, navy; "Grey" -> grey, gray);
- gender: men, mens, women, womens, boys, girls; usage: casual, formal, sports, party, ethnic;
- word orders: `[gender] [colour] [usage] type` (canonical, "women blue casual shirt"),
  `[colour] [usage] type for <gender>`, `[colour] [usage] type <gender>`,
  `[gender] usage colour type`;
- each slot uses its canonical word with probability 0.75, else a synonym; 1-3 surface strings
  per intent; about 4% of strings carry one typo (a letter dropped, swapped or doubled in a
  word of >= 5 letters, e.g. "tshrit"). A string that could render two different intents is
  never used; every query string belongs to exactly one intent. Strings have at most 4 words:
  an intent that needs more ("black casual laptop bag men") gets no query.

Examples from test:
{ex}

## Relevance
For a query with attribute set A (article type plus others), over every product in this directory:
**2** = the product matches every attribute of A; **1** = it matches the article type and at least
one, but not all, of the other attributes; otherwise not relevant (not listed). Colour and usage
match by equality of `base_colour` / `usage` ("casual" does not match "Smart Casual"); a gender
matches the parsed `gender`, and Unisex products match both men and women queries (boys and girls
match only Boys and Girls). A type-only query has every product of that type at relevance 2.

## Splits
Intents, not only strings, are split (per kind, seeded shuffle): 70% train, 10% valid, 20% test,
so valid and test intents are unseen in training and no valid/test query string occurs in train.
Train: for each train query string, up to 8 of its relevance-2 products, sampled, as clicks with
weight 1.0. Valid/test: every relevant product (relevance 1 and 2) of each query; queries are
capped at {valid_cap} (valid) and {test_cap} (test), sampled stratified over intent kinds.
Relevance comes from attributes only: e.g. a product whose title says "Black" but whose
`base_colour` is "Grey" counts as grey.
{strip_section}"""


def strip_readme_text(st: dict) -> str:
    top = ", ".join(f"{w} {n}" for w, n in list(st["removed_words"].items())[:25])
    return f"""
## Colour only in the photo (--strip-colour)
Titles have no colour and no pattern words, and `products.parquet` has no `base_colour` column, so
a colour query ("women red dress") can only be answered from the photo. Queries, relevance grades,
splits and the product selection are those of the same command without `--strip-colour` (relevance
still comes from the source's `base_colour`; the gender is parsed from the full title); only the
`title` column differs and `base_colour` is left out.

Removed from each title (whole words, case-insensitive, also inside "Off-White", "Silver-Toned"):
every word of the catalog's base colours and of the query colour synonyms, other colour names found
in the titles (golden, coral, wine, ...), shade words right before a colour ("light", "dark", "off",
"sea", ...), "coloured"/"toned"/"colour" right after one, "&"/"and" between removed words, and
pattern words (printed, solid, check, striped, melange, floral, polka, dots, ...). Brand words that
are base colours go too ("Red Tape" -> "Tape"); "Indigo Nation", "Ivory Tag" and "Miami Blues"
stay. In the titles of skin care and fragrances (no colour queries) "cream" and "skin" stay: there
they name the product ("Night Cream", "Skin Polisher"; {st["no_colour_type_titles_keeping_a_product_noun"]} titles).
A title left empty becomes its article type ({st["titles_emptied_replaced_by_article_type"]} titles).

- titles changed: {st["titles_changed"]}
- words per title: mean {st["title_words_mean_before"]} before, {st["title_words_mean_after"]} after
- titles with a colour or pattern word: {st["titles_with_colour_or_pattern_word_before"]} before, \
{st["titles_with_colour_or_pattern_word_after"]} after
- titles of the types with colour queries that hold a word a colour query can contain (searched
  independently of the removal): {st["titles_with_query_colour_word_before"]} before, \
{st["titles_with_query_colour_word_after"]} after
- most removed words: {top}
- the full word lists and counts are in `stats.json` (`colour_strip`)
"""


if __name__ == "__main__":
    sys.exit(main())
