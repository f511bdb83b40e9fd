#!/usr/bin/env python
"""Split a test set into the queries that name a colour and the others, and score runs on each:
on the colour-from-photo catalog (``derive_fashion_queries.py --strip-colour``) only the photo can
answer the first kind, so this shows what the image side contributes.

    python scripts/colour_queries.py --data runs/colour-from-photo --colours data/demo/products.parquet \\
        --runs runs/bench-colour/text-dual/seed0 runs/bench-colour/make/seed0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow.parquet as pq

from make_retrieval.data.keywords import tokenize
from make_retrieval.data.pairs import load_data_dir
from make_retrieval.evaluate import ExactRetriever, evaluate_retriever
from make_retrieval.index.lexical import LexicalIndex
from make_retrieval.model.checkpoint import load_model
from make_retrieval.retrieval import Retriever

#: Shoppers' colour words that are not a word of a base_colour value (derive_fashion_queries.py).
SYNONYMS = {"navy", "gray", "multicolour", "multicolor", "turquoise", "neon", "off"}


def colour_vocabulary(products: Path) -> set[str]:
    """Every word of every ``base_colour`` value of a catalog that still has them, plus synonyms."""
    values = pq.read_table(products, columns=["base_colour"]).column("base_colour").to_pylist()
    return {word for value in values if value for word in tokenize(value)} | SYNONYMS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--colours", type=Path, default=Path("data/demo/products.parquet"))
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    data = load_data_dir(args.data, (args.split,))
    judged = data.judgements[args.split]
    colours = colour_vocabulary(args.colours)
    named = {q: j for q, j in judged.items() if colours & set(tokenize(q))}
    other = {q: j for q, j in judged.items() if q not in named}
    print(f"{len(named)} queries name a colour, {len(other)} do not")
    print("| run | colour queries NDCG@10 | R@100 | other queries NDCG@10 | R@100 |")
    print("|---|---|---|---|---|")
    retrievers: list[tuple[str, Retriever]] = [("bm25", LexicalIndex.from_catalog(data.catalog))]
    retrievers += [(str(run), ExactRetriever(load_model(run)[0], data.catalog)) for run in args.runs]
    for name, retriever in retrievers:
        scores = [evaluate_retriever(retriever, part, data.catalog).metrics for part in (named, other)]
        cells = [f"{m['ndcg@10']:.4f} | {m['recall@100']:.4f}" for m in scores]
        print(f"| {name} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
