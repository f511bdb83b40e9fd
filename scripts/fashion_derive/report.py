"""What the output directory says about itself and the run prints: stats.json (build_stats),
README.md (origin, licence, command, grammar, relevance definition) and the printed summary."""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from typing import NamedTuple

import pandas as pd

from .catalog import Catalog
from .cli import Options
from .pairs import Caps, Judged, Pairs
from .queries import IntentChoice, Queries
from .sampling import rng_for, sample_sorted
from .titles import Titles
from .vocabulary import KINDS


def describe(values: list[int]) -> dict:
    """Mean (2 decimals), median, min and max of `values`; zeros if empty."""
    if not values:
        return {"mean": 0, "median": 0, "max": 0, "min": 0}
    return {
        "mean": round(statistics.fmean(values), 2),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def _per_query_stats(rows: list[tuple[str, str, int]]) -> dict:
    """Relevant and relevance-2 products per query of an eval split."""
    n_all: Counter = Counter()
    n_2: Counter = Counter()
    for q, _, r in rows:
        n_all[q] += 1
        if r == 2:
            n_2[q] += 1
    qs = sorted(n_all)
    return {"relevant": describe([n_all[q] for q in qs]), "relevance_2": describe([n_2[q] for q in qs])}


def build_stats(
    catalog: Catalog,
    products: pd.DataFrame,
    n_images: int,
    intents: IntentChoice,
    queries: Queries,
    pairs: Pairs,
    titles: Titles,
) -> dict:
    """The counts and relevance statistics of stats.json, which README.md and the summary also show."""
    rows, by_split = pairs.rows, pairs.by_split
    covered_types = sorted(set(products["article_type"]))
    genders = Counter(x or "" for x in products["gender"])
    stats = {
        "source_products": catalog.n_source,
        "source_products_with_image": catalog.n_with_image,
        "products": len(products),
        "images": n_images,
        "article_types": len(covered_types),
        "article_types_with_queries": len({it.article_type for it in queries.surfaces}),
        "genders": {g if g else "none": int(n) for g, n in sorted(genders.items())},
        "candidate_intents": intents.n_candidates,
        "intents": {sp: len({it for v in by_split[sp].values() for _, it in v}) for sp in rows},
        "intents_by_kind": {kind: {sp: len({it for _, it in by_split[sp][kind]}) for sp in rows} for kind, _ in KINDS},
        "queries": {sp: len({r[0] for r in rows[sp]}) for sp in rows},
        "queries_before_cap": {sp: sum(len(v) for v in by_split[sp].values()) for sp in ("valid", "test")},
        "test_queries_by_kind": dict(sorted(Counter(it.kind for _, it in pairs.judged.queries["test"]).items())),
        "misspelt_surfaces": queries.n_misspelt,
        "pairs": {sp: len(rows[sp]) for sp in rows},
        "train_clicks_per_query": describe(list(Counter(r[0] for r in rows["train"]).values())),
        "valid": _per_query_stats(rows["valid"]),
        "test": _per_query_stats(rows["test"]),
        "article_types_covered": covered_types,
    }
    if titles.stripped:
        stats["strip_colour"] = True
        stats["colour_strip"] = titles.strip_stats
    return stats


def command_line(opts: Options) -> str:
    """The command that reproduces the directory, non-default options only, for README.md."""
    cmd = (
        f"python scripts/derive_fashion_queries.py --source {opts.source} --out {opts.out} "
        f"--products {opts.products} --seed {opts.seed}"
    )
    for flag, val, default in (
        ("--min-type-count", opts.min_type_count, 15),
        ("--type-floor", opts.type_floor, 12),
        ("--max-intents", opts.max_intents, None),
        ("--valid-queries", opts.valid_queries, None),
        ("--test-queries", opts.test_queries, None),
    ):
        if val != default:
            cmd += f" {flag} {val}"
    if opts.strip_colour:
        cmd += " --strip-colour"
    return cmd


class ReadmeParts(NamedTuple):
    """What the README.md of a derive_fashion_queries.py output and of a protocol split differ in."""

    heading: str  # the title line, and for a protocol split the paragraph on what it measures
    script: str  # the script that writes the directory
    cmd: str  # the command that reproduces it
    splits: str  # the body of the Splits section
    photos: bool = True  # False: no images/ folder and a null image column
    same_as: str = "the same command without `--strip-colour`"  # what the colour-strip section compares with


def demo_parts(opts: Options, caps: Caps) -> ReadmeParts:
    """The README parts of derive_fashion_queries.py's output."""
    return ReadmeParts(
        "# Fashion products with simulated shopper queries",
        "scripts/derive_fashion_queries.py",
        command_line(opts),
        DEMO_SPLITS.format(valid_cap=caps.valid, test_cap=caps.test),
    )


def write_report(opts: Options, stats: dict, judged: Judged, parts: ReadmeParts | None = None) -> None:
    """Write stats.json and README.md (`parts`: the demo's by default): the directory's counts, origin and
    definitions, for its readers."""
    with open(os.path.join(opts.out, "stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=1, sort_keys=False)
        f.write("\n")
    examples = sample_sorted(rng_for(opts.seed, "readme"), [q for q, _ in judged.queries["test"]], 12)
    text = readme_text(
        stats, examples, opts.products, parts or demo_parts(opts, judged.caps), stats.get("colour_strip")
    )
    with open(os.path.join(opts.out, "README.md"), "w", encoding="utf-8") as f:
        f.write(text)


def print_summary(stats: dict, out: str) -> None:
    """Print the headline counts and the size of `out`, for the person running the script."""
    size = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(out) for fn in fns)
    n_intents, n_queries, pairs, test = stats["intents"], stats["queries"], stats["pairs"], stats["test"]
    print(
        f"products {stats['products']} (of {stats['source_products_with_image']} with image), article types "
        f"{stats['article_types']} ({stats['article_types_with_queries']} with queries)"
    )
    print(
        f"intents: {stats['candidate_intents']} candidates, kept train {n_intents['train']} / valid "
        f"{n_intents['valid']} / test {n_intents['test']}"
    )
    print(
        f"queries: train {n_queries['train']}, valid {n_queries['valid']}, test {n_queries['test']}; misspelt "
        f"surfaces {stats['misspelt_surfaces']}"
    )
    print(f"pairs: train {pairs['train']}, valid {pairs['valid']}, test {pairs['test']}")
    print(
        f"relevant per test query: mean {test['relevant']['mean']}, median "
        f"{test['relevant']['median']}, max {test['relevant']['max']}; "
        f"relevance-2 mean {test['relevance_2']['mean']}"
    )
    strip = stats.get("colour_strip")
    if strip is not None:
        print(
            f"--strip-colour: {strip['titles_changed']} titles changed, words per title "
            f"{strip['title_words_mean_before']} -> {strip['title_words_mean_after']}, titles with a "
            f"query colour word left: {strip['titles_with_query_colour_word_after']}"
        )
    print(f"wrote {out}: {size / 1e6:.2f} MB in files")


# --------------------------------------------------------------------------------------------
# README.md
# --------------------------------------------------------------------------------------------

README_TEMPLATE = """{heading}

A data directory in the format of the README's "Your own data": real fashion products with {photos_and}
titles, and **simulated** shopper queries with **graded relevance derived from catalog attributes**
(no real clicks or human judgements exist for this catalog).

## Origin and licence
Products, titles, attributes and photos (60x80 JPEG) come from the "Fashion Product Images (Small)"
data set (Param Aggarwal, published on Kaggle; MIT licence as published there), 44,072 products of an
Indian e-commerce catalog. Queries, clicks, relevance grades and the gender column are derived by
`{script}` of this repository (deterministic; rerunning gives byte-identical
files):

    {cmd}

Subset: {subset}. Only products whose image is in the source archive are used.

## Files
- `products.parquet`: `product_id`, `title`, `image` ({image_col}), `category`
  (= `article_type`, for per-category metrics), `master_category`, `sub_category`, `article_type`,
  {base_colour_col}`usage`, `gender` (parsed from the title: Men/Women/Boys/Girls/Unisex, the first such
  word after removing the brand "Mr. Men"; null if none). Sorted by `product_id`.
- `train.parquet`: `query`, `product_id`, `weight` (1.0): simulated clicks.
- `valid.parquet`, `test.parquet`: `query`, `product_id`, `relevance` (1 or 2); products not listed
  are not relevant.
- {images_line}
- `stats.json`: counts and relevance statistics; `README.md`: this file.

## Counts
- products: {products}, article types: {article_types} ({n_qtypes} with queries)
- queries: {queries_train} train, {queries_valid} valid, {queries_test} test
- pairs: {pairs_train} train clicks, {pairs_valid} valid, {pairs_test} test
- relevant products per test query: {test_relevant}; relevance 2 only:
  {test_relevance_2}
- relevant products per valid query: {valid_relevant}; relevance 2 only:
  {valid_relevance_2}
- clicks per train query: {train_clicks}

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
{examples}

## Relevance
For a query with attribute set A (article type plus others), over every product in this directory:
**2** = the product matches every attribute of A; **1** = it matches the article type and at least
one, but not all, of the other attributes; otherwise not relevant (not listed). Colour and usage
match by equality of `base_colour` / `usage` ("casual" does not match "Smart Casual"); a gender
matches the parsed `gender`, and Unisex products match both men and women queries (boys and girls
match only Boys and Girls). A type-only query has every product of that type at relevance 2.

## Splits
{splits}
{strip_section}"""

DEMO_SPLITS = """Intents, not only strings, are split (per kind, seeded shuffle): 70% train, 10% valid, 20% test,
so valid and test intents are unseen in training and no valid/test query string occurs in train.
Train: for each train query string, up to 8 of its relevance-2 products, sampled, as clicks with
weight 1.0. Valid/test: every relevant product (relevance 1 and 2) of each query; queries are
capped at {valid_cap} (valid) and {test_cap} (test), sampled stratified over intent kinds.
Relevance comes from attributes only: e.g. a product whose title says "Black" but whose
`base_colour` is "Grey" counts as grey."""


def readme_text(st: dict, examples: list[str], n_req: int, parts: ReadmeParts, strip: dict | None = None) -> str:
    """README.md of the output directory from its stats: origin, licence, counts and definitions."""

    def fmt(d: dict) -> str:
        return f"mean {d['mean']}, median {d['median']}, max {d['max']}"

    subset = (
        "the whole catalog (every product with an image)"
        if n_req == 0
        else f"{st['products']} products, stratified over article types: every article type with "
        f">= 15 products in the source is represented, proportionally to its size with a floor "
        f"of 12 products per type (random.Random, seeded)"
    )
    q, pairs = st["queries"], st["pairs"]
    return README_TEMPLATE.format(
        heading=parts.heading,
        script=parts.script,
        cmd=parts.cmd,
        subset=subset,
        image_col="`images/<product_id>.jpg`" if parts.photos else "null: no photo, every product is text-only",
        images_line="`images/`: one JPEG per product." if parts.photos else "no `images/` folder.",
        photos_and="photos and" if parts.photos else "their",
        base_colour_col="`base_colour`, " if strip is None else "",
        products=st["products"],
        article_types=st["article_types"],
        n_qtypes=st["article_types_with_queries"],
        queries_train=q["train"],
        queries_valid=q["valid"],
        queries_test=q["test"],
        pairs_train=pairs["train"],
        pairs_valid=pairs["valid"],
        pairs_test=pairs["test"],
        test_relevant=fmt(st["test"]["relevant"]),
        test_relevance_2=fmt(st["test"]["relevance_2"]),
        valid_relevant=fmt(st["valid"]["relevant"]),
        valid_relevance_2=fmt(st["valid"]["relevance_2"]),
        train_clicks=fmt(st["train_clicks_per_query"]),
        kinds="\n".join(
            f"| {k} | " + " | ".join(str(st["intents_by_kind"][k][s]) for s in ("train", "valid", "test")) + " |"
            for k, _ in KINDS
        ),
        examples="\n".join(f"- `{q}`" for q in examples),
        splits=parts.splits,
        strip_section="" if strip is None else strip_readme_text(strip, parts.same_as),
    )


def strip_readme_text(st: dict, same_as: str) -> str:
    """README.md's section on --strip-colour, from stats.json's colour_strip; `same_as` is what it compares with."""
    top = ", ".join(f"{w} {n}" for w, n in list(st["removed_words"].items())[:25])
    return f"""
## Colour only in the photo (--strip-colour)
Titles have no colour and no pattern words, and `products.parquet` has no `base_colour` column, so
a colour query ("women red dress") can only be answered from the photo. Queries, relevance grades,
splits and the product selection are those of {same_as} (relevance
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
