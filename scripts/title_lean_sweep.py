#!/usr/bin/env python
"""Valid and test NDCG@10 / R@100 of a trained run with its modality weights leaned onto the title
by each share (MAKEModel.title_lean), the choice ``train.title_lean`` makes on validation alone:
how far the two splits agree (docs/RESULTS.md, "Title lean").

    python scripts/title_lean_sweep.py --run RUN_DIR --data runs/protocol/category-held-out --shares 0,0.5,1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from make_retrieval.data.pairs import load_data_dir
from make_retrieval.evaluate import ExactRetriever, evaluate_retriever
from make_retrieval.model.checkpoint import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--shares", default="0,0.5,1")
    args = parser.parse_args()
    model, _, _ = load_model(args.run)
    data = load_data_dir(args.data, splits=("valid", "test"))
    print(f"{args.run}: title_lean as trained {model.title_lean.item():g}")
    for share in (float(s) for s in args.shares.split(",")):
        model.title_lean.fill_(share)
        shown = []
        for split in ("valid", "test"):
            result = evaluate_retriever(ExactRetriever(model, data.catalog), data.judgements[split], data.catalog)
            shown.append(f"{split} NDCG@10 {result.metrics['ndcg@10']:.4f} R@100 {result.metrics['recall@100']:.4f}")
        print(f"share {share:g}: " + ", ".join(shown), flush=True)


if __name__ == "__main__":
    main()
