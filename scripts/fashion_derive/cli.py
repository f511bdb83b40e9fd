"""The command line: its flags and the Options they become."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    """The command line (see parse_args)."""

    source: str
    out: str
    products: int
    seed: int
    min_type_count: int
    type_floor: int
    max_intents: int | None
    valid_queries: int | None
    test_queries: int | None
    strip_colour: bool


def parse_args(argv: list[str] | None, description: str) -> Options:
    """Parse the command line into Options, so that every stage gets typed settings; `description` heads --help."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    return Options(**vars(args))
