"""The development protocol of issue 21: the splits derive_protocol.py builds, each a data directory
in the format of data/demo, made by the stages of derive_fashion_queries.py with another splitter."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from .catalog import Catalog, read_catalog
from .cli import Options, parse_args
from .derive import Derived, derive_pairs
from .output import copy_photos, write_tables
from .pairs import SPLITS, Caps, Split
from .protocol_splits import split_category, split_compositional, split_small_log
from .protocol_text import category_how, compositional_how, intent_split_how, splits_text
from .relevance import ProductIndex
from .report import ReadmeParts, build_stats, print_summary, write_report
from .vocabulary import Intent

SMALL_PRODUCTS, SMALL_CLICKS = 1500, 1000  # the small catalogs: at most this many products and train clicks


@dataclass(frozen=True)
class ProtocolSplit:
    """One split of the protocol: its folder, size limits, splitter, and what its README says it measures."""

    name: str
    products: int
    max_clicks: int
    splitter: Callable[[dict[Intent, list[str]], ProductIndex, int, int], Split]  # protocol_splits.split_*
    how: Callable[[dict], str]  # README: how the queries were split, from stats.json's protocol (protocol_text)
    about: str  # README: what the split measures ({products} and {max_clicks} are filled in)
    strip_colour: bool = False
    photos: bool = True


PROTOCOL = [
    ProtocolSplit(
        "small-log",
        SMALL_PRODUCTS,
        SMALL_CLICKS,
        split_small_log,
        intent_split_how,
        "A small catalog with a small click log: at most {products:,} products and at most {max_clicks:,} training\n"
        "clicks (rows of `train.parquet`). Valid and test queries render intents unseen in training.",
    ),
    ProtocolSplit(
        "text-only",
        SMALL_PRODUCTS,
        SMALL_CLICKS,
        split_small_log,
        intent_split_how,
        "The products, queries, clicks and judgements of `small-log` (its `train/valid/test.parquet` are the\n"
        "same files), with every photo dropped: the `image` column is null and there is no `images/` folder,\n"
        "so every product is text-only and search is led by the title and the attributes.",
        photos=False,
    ),
    ProtocolSplit(
        "colour-from-photo",
        4000,
        5000,
        split_small_log,
        intent_split_how,
        "{products:,} products and at most {max_clicks:,} training clicks, the size of a real apparel catalog we are\n"
        "compared on, with colour and pattern words removed from the titles and no `base_colour` column (as\n"
        "`derive_fashion_queries.py --strip-colour`): a colour query can only be answered from the photo.\n"
        "The photos are copied as they are, at their real size: the source has only 60x80 JPEGs.",
        strip_colour=True,
    ),
    ProtocolSplit(
        "compositional",
        SMALL_PRODUCTS,
        SMALL_CLICKS,
        split_compositional,
        compositional_how,
        "Valid and test queries are new combinations of attribute values each of which occurs in training:\n"
        "every valid/test intent's article type, colour, gender and usage each appear in some training\n"
        "intent, while the intent itself never does. At most {products:,} products and {max_clicks:,} training\n"
        "clicks.",
    ),
    ProtocolSplit(
        "category-held-out",
        SMALL_PRODUCTS,
        SMALL_CLICKS,
        split_category,
        category_how,
        "Test queries come only from article types that no training query names, valid queries from a\n"
        "disjoint set of such types, so that both measure search in categories unseen in training. At most\n"
        "{products:,} products and {max_clicks:,} training clicks.",
    ),
]


def protocol_stats(spec: ProtocolSplit, d: Derived) -> dict:
    """stats.json's `protocol`: the split's limits, what its splitter reports, and the intent of every query
    in the files (`article_type|colour|gender|usage`), so that its properties can be checked on them."""
    queries = {"train": [q for v in d.pairs.by_split["train"].values() for q in v], **d.pairs.judged.queries}
    return {
        "split": spec.name,
        "max_products": spec.products,
        "max_clicks": spec.max_clicks,
        "photos": spec.photos,
        "strip_colour": spec.strip_colour,
        **d.notes,
        "article_types_with_queries": {s: len({it.article_type for _, it in queries[s]}) for s in SPLITS},
        "query_intents": {s: {q: it.key for q, it in sorted(queries[s])} for s in SPLITS},
    }


def readme_parts(spec: ProtocolSplit, opts: Options, out_root: str, stats: dict, caps: Caps) -> ReadmeParts:
    """The README parts of a protocol split: its heading and purpose, command and how it was split."""
    return ReadmeParts(
        f"# Development split `{spec.name}` of the fashion catalog (issue 21)\n\n"
        + spec.about.format(products=spec.products, max_clicks=spec.max_clicks),
        "scripts/derive_protocol.py",
        f"python scripts/derive_protocol.py --source {opts.source} --out {out_root} --seed {opts.seed}",
        splits_text(spec.how(stats["protocol"]), stats, caps),
        photos=spec.photos,
        same_as="the same split with the titles and `base_colour` kept",
    )


def build_split(catalog: Catalog, spec: ProtocolSplit, source: str, out_root: str, seed: int) -> dict:
    """Derive, check, write and describe one split in OUT_ROOT/<name>; returns its stats."""
    argv = ["--source", source, "--out", os.path.join(out_root, spec.name), "--products", str(spec.products)]
    opts = parse_args([*argv, "--seed", str(seed), *(["--strip-colour"] if spec.strip_colour else [])], "")
    d = derive_pairs(catalog, opts, partial(spec.splitter, max_clicks=spec.max_clicks))
    assert len(d.products) <= spec.products and len(d.pairs.rows["train"]) <= spec.max_clicks, spec.name
    n_images = copy_photos(catalog.images_tar, d.products, opts.out, spec.photos)
    write_tables(opts.out, d.products, d.titles, d.pairs.rows, spec.photos)
    stats = build_stats(catalog, d.products, n_images, d.intents, d.queries, d.pairs, d.titles)
    stats["protocol"] = protocol_stats(spec, d)
    write_report(opts, stats, d.pairs.judged, readme_parts(spec, opts, out_root, stats, d.pairs.judged.caps))
    print_summary(stats, opts.out)
    return stats


def build_protocol(source: str, out_root: str, seed: int) -> None:
    """Every split of PROTOCOL from one read of the source, then a table of their counts."""
    catalog = read_catalog(source)
    built = {}
    for spec in PROTOCOL:
        print(f"== {spec.name}")
        built[spec.name] = build_split(catalog, spec, source, out_root, seed)
    print(f"\n{'split':<18} products images train-queries clicks valid test  article types train/valid/test")
    for name, st in built.items():
        q, types = st["queries"], st["protocol"]["article_types_with_queries"]
        print(
            f"{name:<18} {st['products']:>8} {st['images']:>6} {q['train']:>13} {st['pairs']['train']:>6} "
            f"{q['valid']:>5} {q['test']:>4}  {st['article_types']} / {types['train']}/{types['valid']}/{types['test']}"
        )
