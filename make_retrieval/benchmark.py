"""The benchmark: train and evaluate each model variant over several seeds, then one table.

Every variant goes through the same data, trainer, exact index and evaluation; BM25 runs once (it
has no seed). A (model, seed) whose run folder holds a record made with the same config is not
trained again, so an interrupted benchmark resumes where it stopped. The results are rewritten
after every run as ``results.json`` (every run) and ``results.md`` (mean and spread over seeds,
training time, per-category NDCG@10, per-category Modal Adaptation weights).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from make_retrieval.config import Config
from make_retrieval.data.pairs import DataDir, load_data_dir
from make_retrieval.errors import ConfigError
from make_retrieval.evaluate import ExactRetriever, evaluate_retriever
from make_retrieval.hybrid import evaluate_hybrid
from make_retrieval.index.lexical import LexicalIndex
from make_retrieval.model.baselines import VARIANTS, with_variant
from make_retrieval.model.checkpoint import load_model
from make_retrieval.train.loop import train

#: A finished run's record (config + metrics) in its run folder; a rerun with the same config reuses it.
RECORD = "benchmark_record.json"

#: A model name ending so is that model's run fused with BM25 (``make+bm25``: hybrid.py).
HYBRID = "+bm25"
#: Metrics of the headline table, in order.
TABLE_METRICS = ("recall@10", "recall@50", "recall@100", "recall@1000", "mrr@10", "ndcg@10")


@dataclass
class RunRecord:
    """One trained-and-evaluated (model, seed), or the BM25 baseline (seed None)."""

    model: str
    seed: int | None
    metrics: dict[str, float]
    per_category: dict[str, dict[str, float]]
    train_seconds: float = 0.0
    weights_by_category: dict[str, dict[str, float]] = field(default_factory=dict)
    #: A ``NAME+bm25`` row's fusion as chosen on valid (``Fusion.to_dict``).
    fusion: dict[str, Any] | None = None


def run_benchmark(
    data_dir: Path,
    out: Path,
    config: Config,
    models: Sequence[str],
    seeds: Sequence[int],
    log: Callable[[str], None] = print,
) -> list[RunRecord]:
    """Train/evaluate every (model, seed) on the test split; BM25 once. Writes results.json/.md.

    ``seeds`` need not start at 0: seeds 1-2 can be added to a benchmark whose seed 0 ran elsewhere.
    """
    if not models:
        raise ConfigError("no models to benchmark")
    unknown = sorted(m for m in set(models) - {"bm25"} if m.removesuffix(HYBRID) not in VARIANTS)
    if unknown:
        names = ", ".join(sorted(VARIANTS))
        raise ConfigError(f"unknown model(s) {unknown}; choose from bm25, {names} (each also as NAME{HYBRID})")
    data = load_data_dir(data_dir, splits=("test", "valid"))
    judged = data.judgements["test"]
    records: list[RunRecord] = []
    if "bm25" in models:
        result = evaluate_retriever(LexicalIndex.from_catalog(data.catalog), judged, data.catalog)
        records.append(RunRecord("bm25", None, result.metrics, result.per_category))
    trained = [m for m in models if m != "bm25"]
    # seed-major: an interrupted benchmark has whole seeds of every model, not all seeds of a few
    for seed in seeds:
        for name in trained:
            records.append(_record(name, config, seed, data, out, log))
            _write_results(out, records, models)
    return _write_results(out, records, models)


def _record(name: str, config: Config, seed: int, data: DataDir, out: Path, log: Callable[[str], None]) -> RunRecord:
    """The record of ``name`` at ``seed``: reused from its run folder, or trained and evaluated. A
    ``NAME+bm25`` row fuses NAME's run (trained here if it is not yet) with BM25 as ``embed`` does."""
    base = name.removesuffix(HYBRID)
    variant = with_variant(config, base)
    variant.train.seed = seed
    run_dir = out / name / f"seed{seed}"
    record = _finished(run_dir, variant)
    if record is not None:
        log(f"benchmark: {name}, seed {seed}: finished earlier, reused ({run_dir / RECORD})")
        return record
    log(f"benchmark: {name}, seed {seed}")
    if name == base:
        return _train_and_evaluate(name, variant, data, run_dir)
    base_dir = out / base / f"seed{seed}"
    if _finished(base_dir, variant) is None:
        _train_and_evaluate(base, variant, data, base_dir)
    model, _, _ = load_model(base_dir)
    result, fusion = evaluate_hybrid(model, data, "test", variant.index)
    log(f"benchmark: {name}, seed {seed}: fused {fusion.describe()}")
    seconds = json.loads((base_dir / RECORD).read_text())["record"]["train_seconds"]
    record = RunRecord(name, seed, result.metrics, result.per_category, seconds, fusion=fusion.to_dict())
    return _keep(run_dir, variant, record)


def _write_results(out: Path, records: list[RunRecord], models: Sequence[str]) -> list[RunRecord]:
    """results.json and results.md of the runs so far (rewritten after every run), in model order."""
    records.sort(key=lambda r: (models.index(r.model), r.seed or 0))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps([r.__dict__ for r in records], indent=2))
    (out / "results.md").write_text(markdown_report(records))
    return records


def _train_and_evaluate(name: str, config: Config, data: DataDir, run_dir: Path) -> RunRecord:
    """Train one (variant, seed), evaluate it on test, and leave its record in the run folder."""
    trained = train(config, data.root, run_dir)
    model, _, _ = load_model(run_dir)
    retriever = ExactRetriever(model, data.catalog)
    result = evaluate_retriever(retriever, data.judgements["test"], data.catalog)
    weights = retriever.weights_by_category() if model.config.modal_adaptation else {}
    record = RunRecord(name, config.train.seed, result.metrics, result.per_category, trained.seconds, weights)
    return _keep(run_dir, config, record)


def _keep(run_dir: Path, config: Config, record: RunRecord) -> RunRecord:
    """Write ``record`` with the config it was made with into its run folder (what a rerun reuses)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    payload = {"config": dataclasses.asdict(config), "record": record.__dict__}
    (run_dir / RECORD).write_text(json.dumps(payload, indent=2))
    return record


def _finished(run_dir: Path, config: Config) -> RunRecord | None:
    """The record of a run finished earlier with the same config (a killed benchmark resumes)."""
    path = run_dir / RECORD
    if not path.is_file():
        return None
    payload = json.loads(path.read_text())
    if not config.matches(payload.get("config", {}), str(path)):
        return None
    return RunRecord(**payload["record"])


def _mean_spread(values: list[float]) -> str:
    """'mean ± standard deviation' (just the value for a single run)."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def markdown_report(records: list[RunRecord], top_categories: int = 15) -> str:
    """The benchmark tables in Markdown."""
    names = list(dict.fromkeys(r.model for r in records))
    by_model = {n: [r for r in records if r.model == n] for n in names}
    lines = ["| model | seeds | " + " | ".join(TABLE_METRICS) + " | train s |", "|---" * (len(TABLE_METRICS) + 3) + "|"]
    for name, runs in by_model.items():
        cells = [_mean_spread([r.metrics[m] for r in runs]) for m in TABLE_METRICS]
        seconds = statistics.mean(r.train_seconds for r in runs)
        seeds = "-" if runs[0].seed is None else str(len(runs))
        lines.append(f"| {name} | {seeds} | " + " | ".join(cells) + f" | {seconds:.0f} |")

    counts = {c: v["queries"] for c, v in records[0].per_category.items()}
    categories = sorted(counts, key=lambda c: (-counts[c], c))[:top_categories]
    lines += ["", f"NDCG@10 per category (the {len(categories)} with most test queries):", ""]
    lines += ["| category | queries | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for category in categories:
        cells = [
            f"{statistics.mean(r.per_category.get(category, {}).get('ndcg@10', 0.0) for r in runs):.3f}"
            for runs in by_model.values()
        ]
        lines.append(f"| {category} | {int(counts[category])} | " + " | ".join(cells) + " |")

    for name, runs in by_model.items():
        if not runs[0].weights_by_category:
            continue
        table = _mean_weights(runs)
        modalities = [k for k in next(iter(table.values())) if k != "products"]
        lines += ["", f"Mean Modality Adaptation weights per category, {name} (most image-led first):", ""]
        lines += ["| category | products | " + " | ".join(modalities) + " |", "|---" * (len(modalities) + 2) + "|"]
        for category, row in sorted(table.items(), key=lambda kv: (-kv[1].get("image", 0.0), kv[0])):
            cells = [f"{row[m]:.3f}" for m in modalities]
            lines.append(f"| {category} | {int(row['products'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mean_weights(runs: list[RunRecord]) -> dict[str, dict[str, Any]]:
    """Per-category weights averaged over seeds."""
    categories = runs[0].weights_by_category
    return {
        c: {k: statistics.mean(r.weights_by_category[c][k] for r in runs) for k in row} for c, row in categories.items()
    }
