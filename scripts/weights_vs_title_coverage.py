"""Do Modal Adaptation's weights follow how much of a category the title can tell? For each category:
the mean image weight of its products (from a benchmark's results.json) and the share of clicked
query terms that are missing from the clicked product's title (from the training clicks). Where
titles miss more of what shoppers ask for, the image has to carry it: MA should weight it more.

    python scripts/weights_vs_title_coverage.py --data data/demo --results runs/benchmark-s3/results.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from make_retrieval.data.keywords import tokenize
from make_retrieval.data.pairs import load_data_dir


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (ties broken by position: category means rarely tie)."""
    ranks = [np.argsort(np.argsort(x)) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/demo"))
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--model", default="make")
    parser.add_argument("--min-products", type=int, default=20)
    args = parser.parse_args()
    data = load_data_dir(args.data, ("train",))
    assert data.train is not None
    missing: dict[str, list[float]] = defaultdict(list)
    for query, product in zip(data.train.queries, data.train.products, strict=True):
        terms = set(tokenize(query))
        category = data.catalog.categories[product]
        if terms and category:
            missing[category].append(len(terms - set(tokenize(data.catalog.titles[product]))) / len(terms))
    for record in json.loads(args.results.read_text()):
        if record["model"] != args.model:
            continue
        weights = record["weights_by_category"]
        cats = [c for c, w in weights.items() if w["products"] >= args.min_products and c in missing]
        image = np.array([weights[c]["image"] for c in cats])
        gap = np.array([np.mean(missing[c]) for c in cats])
        print(f"{args.model} seed {record['seed']}: {len(cats)} categories, Spearman(image weight, "
              f"query terms missing from the title) = {spearman(image, gap):+.2f}")
        order = np.argsort(image)
        for label, picked in (("most title-led", order[:5]), ("most image-led", order[::-1][:5])):
            shown = ", ".join(f"{cats[i]} {image[i]:.3f} / {gap[i]:.2f}" for i in picked)
            print(f"  {label} (image weight / terms missing): {shown}")


if __name__ == "__main__":
    main()
