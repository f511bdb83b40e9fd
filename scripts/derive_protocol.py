#!/usr/bin/env python
"""Build the development protocol of issue 21 from the Fashion Product Images (Small) catalog.

One data directory per split under --out, each in the format of data/demo (products.parquet,
train/valid/test.parquet, images/, stats.json, README.md saying how it was made and its counts):

    small-log          <= 1,500 products, <= 1,000 training clicks; eval intents unseen in training
    text-only          small-log with every photo dropped (null image column, no images/)
    colour-from-photo  4,000 products, <= 5,000 clicks, colour and pattern words stripped from titles
    compositional      eval intents: unseen combinations of attribute values each seen in training
    category-held-out  eval queries only from article types no training query names

The splits are derived, never vendored: the stages are those of derive_fashion_queries.py
(fashion_derive/derive.py) with the splitters of fashion_derive/protocol_splits.py, and the splits are
listed in fashion_derive/protocol.py. Deterministic under --seed: rerunning gives byte-identical
files. Needs pandas (the project's dev extra).

Usage:
    python scripts/derive_protocol.py --source ../shared/data/fashion-products --out runs/protocol --seed 0
"""

from __future__ import annotations

import argparse
import os
import sys

# fashion_derive/ sits next to this file and is not installed (see derive_fashion_queries.py).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fashion_derive.protocol import build_protocol


def main(argv: list[str] | None = None) -> int:
    """Build every split of the protocol under --out; 0 on success."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True, help="dir with products.parquet and images.tar.gz")
    ap.add_argument("--out", required=True, help="output folder: one data directory per split")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    build_protocol(args.source, args.out, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
