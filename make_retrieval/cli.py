"""``make-retrieval``: train, embed, search, serve, evaluate, demo.

Data errors are printed as one line naming file, row and field (exit code 2), not a traceback.
This module imports only light modules at the top (config, errors, the variant table), so that
``--help`` and argument errors answer at once; each command imports what it runs. The index and
search commands live in ``cli_index.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from make_retrieval.cli_index import COMMANDS
from make_retrieval.cli_support import SkipBadRows, Split, console, err, fail_on_data_errors
from make_retrieval.config import Config
from make_retrieval.display import metrics_table
from make_retrieval.model.baselines import VARIANTS

if TYPE_CHECKING:
    from make_retrieval.evaluate import EvaluationResult

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.callback()
def _offline() -> None:
    """Nothing is ever downloaded at run time: every model comes from a local folder or a package.
    Set before a command imports transformers / huggingface_hub, which read it once; a program that
    imports the library sets its own environment."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@app.command()
@fail_on_data_errors
def train(
    data: Annotated[Path, typer.Option(help="Data directory (products, train, valid tables).")],
    out: Annotated[Path, typer.Option(help="Run directory to create.")],
    config: Annotated[Path | None, typer.Option(help="YAML config (defaults otherwise).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override train.epochs.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override train.seed.")] = None,
    model: Annotated[
        str | None,
        typer.Option(help=f"Variant: {', '.join(VARIANTS)}."),
    ] = None,
    skip_bad_rows: SkipBadRows = False,
    resume: Annotated[
        bool, typer.Option(help="Continue from the newest training state in --out (same config); fresh if none.")
    ] = False,
) -> None:
    """Pre-train the MAKE model (or a baseline variant) on click triples (query, title, image)."""
    from make_retrieval.model.baselines import with_variant
    from make_retrieval.train.loop import train as run_training

    cfg = Config.load(config)
    if model is not None:
        cfg = with_variant(cfg, model)
    if epochs is not None:
        cfg.train.epochs = epochs
    if max_steps is not None:
        cfg.train.max_steps = max_steps
    if seed is not None:
        cfg.train.seed = seed
    result = run_training(cfg, data, out, skip_bad_rows=skip_bad_rows, resume=resume)
    if not result.main:
        return
    best = "n/a" if result.best is None else f"{result.best:.4f}"
    summary = f"trained {result.steps} steps in {result.seconds:.0f}s; best valid {cfg.train.valid_metric} {best}"
    console.print(f"{summary}; run: {out}")


@app.command()
@fail_on_data_errors
def evaluate(
    data: Annotated[Path, typer.Option(help="Data directory with products and the split's judgements.")],
    run: Annotated[Path | None, typer.Option(help="Run directory made by 'train'.")] = None,
    baseline: Annotated[str | None, typer.Option(help="Evaluate a baseline instead: bm25.")] = None,
    hybrid: Annotated[
        bool, typer.Option(help="The run fused with BM25 (make+bm25), the fusion chosen on the valid split.")
    ] = False,
    split: Annotated[Split, typer.Option(help="Judged split.")] = Split.test,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    skip_bad_rows: SkipBadRows = False,
) -> None:
    """Search the whole catalog for each judged query and print Recall/Precision/MRR/NDCG."""
    from make_retrieval.pipeline import evaluate_on

    if (run is None) == (baseline is None):
        raise typer.BadParameter("give exactly one of --run RUN_DIR or --baseline bm25")
    if hybrid and run is None:
        raise typer.BadParameter("--hybrid fuses a run with BM25: give --run RUN_DIR")
    result = evaluate_on(data, split.value, run, baseline, skip_bad_rows, hybrid)
    if as_json:
        summary = {"model": result.retriever, "split": split.value, "queries": result.queries, **result.metrics}
        print(json.dumps({**summary, "per_category": result.per_category}))
        return
    print_results([result])


def print_results(results: list[EvaluationResult]) -> None:
    """One row per retriever with the headline metrics."""
    console.print(metrics_table(results))


@app.command()
@fail_on_data_errors
def benchmark(
    data: Annotated[Path, typer.Option(help="Data directory with products, train, valid and test.")],
    out: Annotated[Path, typer.Option(help="Folder for the runs and results.md/json.")] = Path("runs/benchmark"),
    models: Annotated[
        str, typer.Option(help="Comma-separated: bm25 and model variants (default: the anchors and make).")
    ] = "bm25,zero-shot,mnrl-1,mnrl-5,frozen-probe,make",
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per model (first-seed, first-seed + 1, ...).")] = 3,
    first_seed: Annotated[int, typer.Option(min=0, help="The first seed.")] = 0,
    config: Annotated[
        Path | None, typer.Option(help="YAML config (default: the library defaults, what 'train' uses).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Override train.max_steps for every run.")] = None,
) -> None:
    """Train and evaluate each model over seeds; write one Markdown and JSON table."""
    from make_retrieval.benchmark import run_benchmark

    cfg = Config.load(config)
    if max_steps is not None:
        cfg.train.max_steps = max_steps
    names = [m.strip() for m in models.split(",") if m.strip()]
    seed_range = range(first_seed, first_seed + seeds)
    run_benchmark(data, out, cfg, names, seed_range, log=lambda line: err.print(line, highlight=False))
    console.print((out / "results.md").read_text(), highlight=False, markup=False)


@app.command()
@fail_on_data_errors
def demo(
    data: Annotated[Path | None, typer.Option(help="Data directory (default: the bundled demo catalog).")] = None,
    out: Annotated[Path, typer.Option(help="Run directory.")] = Path("runs/demo"),
    config: Annotated[Path | None, typer.Option(help="YAML config (default: the demo config).")] = None,
    skip_bad_rows: SkipBadRows = False,
) -> None:
    """Train on the bundled catalog, index it, and compare MAKE with BM25 on the test split."""
    from make_retrieval.pipeline import run_demo

    run_demo(data, out, config, console, print_results, skip_bad_rows)


for _name, _command in COMMANDS:
    app.command(_name)(_command)

if __name__ == "__main__":
    app()
