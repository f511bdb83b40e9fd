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

Needs pandas, which make_retrieval itself does not depend on: it is in the project's dev extra
(`pip install -e '.[dev]'`); without it the script stops with that message. Otherwise only pyarrow
and the standard library are used.

main() runs one function per stage, each passing typed values to the next: parse_args,
read_catalog, derive_pairs (choose_products, clean_titles, choose_intents, derive_queries,
split_queries, synthesise_clicks, judge_relevance, check_pairs), copy_photos, write_tables,
build_stats, write_report, print_summary. The stages live in the package fashion_derive/ next to
this file, one module per concern (its __init__.py lists them); scripts/derive_protocol.py runs
the same stages with other splits.

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

import os
import sys

# fashion_derive/ sits next to this file and is not installed. Python puts a script's folder on
# sys.path only when the script is run as `python scripts/derive_fashion_queries.py`; loaded by path
# (runpy.run_path, importlib, as tests/test_derive_colour.py does) it does not, so add it here.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fashion_derive.catalog import read_catalog
from fashion_derive.cli import parse_args
from fashion_derive.derive import derive_pairs
from fashion_derive.output import copy_photos, write_tables
from fashion_derive.report import build_stats, print_summary, write_report


def main(argv: list[str] | None = None) -> int:
    """Run the stages in order (see the module docstring); 0 on success."""
    opts = parse_args(argv, description=__doc__.split("\n\n")[0])
    catalog = read_catalog(opts.source)
    d = derive_pairs(catalog, opts)
    n_images = copy_photos(catalog.images_tar, d.products, opts.out)
    write_tables(opts.out, d.products, d.titles, d.pairs.rows)
    stats = build_stats(catalog, d.products, n_images, d.intents, d.queries, d.pairs, d.titles)
    write_report(opts, stats, d.pairs.judged)
    print_summary(stats, opts.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
