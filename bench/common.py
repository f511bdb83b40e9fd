"""What the bench scripts share: the model and a real collated batch from a data directory, built as
``train`` builds them (same config, same BatchBuilder), and peak-memory readings."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from make_retrieval.config import Config
from make_retrieval.data.batches import Batch, BatchBuilder, ClickDataset, SimilarQueries
from make_retrieval.data.keywords import KeywordExtractor
from make_retrieval.data.pairs import DataDir, load_data_dir
from make_retrieval.data.tables import find_table, read_rows
from make_retrieval.model.image_cache import image_inputs
from make_retrieval.model.make import MAKEModel

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "make_retrieval" / "configs" / "demo.yaml"


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every bench script takes: ``--data`` and ``--config`` (the script's docstring
    gives the description)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/demo"))
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    return parser


def model_and_batch(config: Config, data_dir: Path, size: int) -> tuple[MAKEModel, Batch, DataDir]:
    """A freshly initialised model (seed 0) and the first ``size`` training pairs collated as in training."""
    data = load_data_dir(data_dir, ("train",))
    assert data.train is not None
    torch.manual_seed(config.train.seed)
    model = MAKEModel(config.model, config.loss.init_temperature)
    keywords = None
    if config.model.keyword_enhancement:
        clicks = zip(data.train.queries, data.train.products, strict=True)
        keywords = KeywordExtractor.fit(data.catalog.titles, clicks, config.model.num_keywords)
    similar = SimilarQueries(config.loss.similar_query_rule, config.loss.similar_query_threshold)
    builder = BatchBuilder(data.catalog, keywords, similar, image_inputs(model, data.catalog))
    dataset = ClickDataset(data.train)
    return model, builder([dataset[i % len(dataset)] for i in range(size)]), data


def rss_mb() -> float:
    """The current resident set of this process."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> None:
    """Start a new peak: Linux resets VmHWM to the current resident set on this write."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def peak_rss_mb() -> float:
    """The highest resident set since the last ``reset_peak_rss`` (VmHWM)."""
    with open("/proc/self/status") as handle:
        line = next(line for line in handle if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def latency_row(label: dict[str, str], values: list[float]) -> dict[str, float | int | str]:
    """``label`` plus the call count, p50, p99 and mean of ``values`` (milliseconds)."""
    return {
        **label,
        "calls": len(values),
        "p50_ms": round(float(np.median(values)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "mean_ms": round(float(np.mean(values)), 2),
    }


def queries_of(data_dir: Path) -> list[str]:
    """Distinct queries of the test split (real shopper-like queries for the catalog)."""
    path = find_table(data_dir, "test")
    return sorted({row["query"] for _, row in read_rows(path, ("query",))})
