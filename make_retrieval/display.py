"""The CLI's tables (rich): search hits with their modality weights, the per-category Modal
Adaptation weights, and evaluation metrics. Kept apart from the commands so that cli.py stays a
list of commands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from make_retrieval.evaluate import EvaluationResult


def hits_table(query: str, query_weights: dict[str, float], results: list[dict[str, Any]]) -> Table:
    """Rank, id, title, category, score, the channels that found it (with their ranks) and the
    product's weights b(p) of each hit; a(q) in the title (none for a lexical search)."""
    modalities = list(results[0]["weights"]) if results else list(query_weights)
    weights = ", ".join(f"{m} {w:.2f}" for m, w in query_weights.items()) or "none: no model ran"
    table = Table(title=f"'{query}'  (query weights: {weights})")
    columns = ("rank", "product_id", "title", "category", "score", "found by", *(f"w_{m}" for m in modalities))
    for column in columns:
        table.add_column(column)
    for rank, result in enumerate(results, start=1):
        table.add_row(
            str(rank),
            result["product_id"],
            result["title"],
            result["category"] or "",
            f"{result['score']:.4f}",
            ", ".join(f"{name} #{at}" for name, at in result["channels"].items()),
            *(f"{w:.2f}" for w in result["weights"].values()),
        )
    return table


def weights_table(by_category: dict[str, dict[str, float]], modalities: Sequence[str]) -> Table:
    """Mean modality weights per category, the most image-led first."""
    table = Table(title="mean modality weights per category (most image-led first)")
    for column in ("category", "products", *modalities):
        table.add_column(column, justify="left" if column == "category" else "right")
    for category, row in sorted(by_category.items(), key=lambda kv: (-kv[1].get("image", 0.0), kv[0])):
        table.add_row(category, str(row["products"]), *(f"{row[m]:.3f}" for m in modalities))
    return table


def metrics_table(results: list[EvaluationResult]) -> Table:
    """One row per retriever with the headline metrics."""
    from make_retrieval.evaluate import METRICS

    table = Table(title=f"{results[0].split} split, {results[0].queries} queries, whole catalog searched")
    table.add_column("model")
    for metric in METRICS:
        table.add_column(metric.replace("recall", "R").replace("precision", "P").upper(), justify="right")
    for result in results:
        table.add_row(result.retriever, *(f"{result.metrics[m]:.4f}" for m in METRICS))
    return table
