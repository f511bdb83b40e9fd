"""Click pairs (``train.*``) and relevance judgements (``valid.*``, ``test.*``), validated row by row."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from make_retrieval.data.catalog import Catalog, load_catalog
from make_retrieval.data.tables import LoadReport, find_shards, find_table, parse_rows, text_field
from make_retrieval.errors import DataError


@dataclass
class Clicks:
    """Training pairs: query text, product row position, click weight."""

    queries: list[str]
    products: list[int]
    weights: list[float]

    def __len__(self) -> int:
        return len(self.queries)


_INTEGER = re.compile(r"\+?\d+(\.0*)?")

#: query -> {product_id: relevance}; the qrels form that ranx reads.
Judgements = dict[str, dict[str, int]]


#: Columns a click table must have (``weight`` is optional).
CLICK_COLUMNS = ("query", "product_id")


def load_clicks(path: Path, catalog: Catalog, report: LoadReport, skip_bad_rows: bool = False) -> Clicks:
    """Read ``train.*``: columns query, product_id and optional positive weight."""

    def parse(number: int, row: dict[str, Any]) -> tuple[str, int, float]:
        return parse_click(path, number, row, catalog)

    rows = list(parse_rows(path, CLICK_COLUMNS, parse, report, skip_bad_rows))
    if not rows:
        raise DataError(path, "no training pairs")
    return Clicks([q for q, _, _ in rows], [p for _, p, _ in rows], [w for _, _, w in rows])


def load_judgements(path: Path, catalog: Catalog, report: LoadReport, skip_bad_rows: bool = False) -> Judgements:
    """Read ``valid.*``/``test.*``: columns query, product_id, integer relevance >= 0. A 0 is a
    judged, not relevant product (TREC- and ESCI-style label files list them): it is checked like
    any row and then left out, as unlisted products are; a query with no relevant product is not
    scored."""

    first_row: dict[tuple[str, int], int] = {}

    def parse(number: int, row: dict[str, Any]) -> tuple[str, int, int]:
        query = text_field(path, number, row, "query")
        product = _known_product(path, number, row, catalog)
        if (query, product) in first_row:
            message = f"query '{query}' judges this product already (row {first_row[query, product]})"
            raise DataError(path, message, number, "product_id")
        relevance = _relevance(path, number, row)
        first_row[query, product] = number
        return query, product, relevance

    judged: Judgements = {}
    for query, product, relevance in parse_rows(
        path, ("query", "product_id", "relevance"), parse, report, skip_bad_rows
    ):
        if relevance > 0:
            judged.setdefault(query, {})[catalog.product_ids[product]] = relevance
    if not judged:
        raise DataError(path, "no query with a relevant product (relevance >= 1)")
    return judged


def parse_click(path: Path, number: int, row: dict[str, Any], catalog: Catalog) -> tuple[str, int, float]:
    """One click row as (query, product position, weight); a DataError names file, row and field."""
    query = text_field(path, number, row, "query")
    return query, _known_product(path, number, row, catalog), _weight(path, number, row)


def _known_product(path: Path, number: int, row: dict[str, Any], catalog: Catalog) -> int:
    pid = text_field(path, number, row, "product_id")
    if pid not in catalog.index:
        raise DataError(path, f"unknown product_id '{pid}' (not in the products table)", number, "product_id")
    return catalog.index[pid]


def _weight(path: Path, number: int, row: dict[str, Any]) -> float:
    value = row.get("weight")
    if value is None:
        return 1.0
    try:
        weight = float(value)
    except (TypeError, ValueError):
        weight = math.nan
    if not math.isfinite(weight) or weight <= 0:
        raise DataError(path, f"must be a positive number, got {value!r}", number, "weight")
    return weight


def _relevance(path: Path, number: int, row: dict[str, Any]) -> int:
    value = row.get("relevance")
    # ints, integral floats (Parquet/JSON) and digit strings (CSV) are accepted; bools are not
    text = "" if isinstance(value, bool) or not isinstance(value, (int, float, str)) else str(value).strip()
    relevance = int(float(text)) if _INTEGER.fullmatch(text) else None
    if relevance is None or relevance < 0:
        raise DataError(path, f"must be an integer >= 0 (0 = judged not relevant), got {value!r}", number, "relevance")
    return relevance


@dataclass
class DataDir:
    """A loaded data directory: catalog, clicks and judgements, and what loading skipped."""

    root: Path
    catalog: Catalog
    report: LoadReport
    train: Clicks | None
    judgements: dict[str, Judgements]
    #: ``train/*.parquet`` shards, streamed by data/stream.py instead of loading ``train`` (then None)
    train_shards: list[Path] | None = None


def load_data_dir(
    root: Path | str,
    splits: tuple[str, ...] = ("train", "valid", "test"),
    skip_bad_rows: bool = False,
    check_images: bool = True,
) -> DataDir:
    """Load ``products`` plus the named splits; ``train`` is read as clicks, the others as judgements.
    A ``train/`` folder of Parquet shards is only listed: training streams it (data/stream.py).

    A split that is absent is skipped unless it is ``train`` and was asked for: training needs it.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "data directory not found")
    report = LoadReport()
    catalog = load_catalog(root, report, skip_bad_rows, check_images)
    train = None
    shards = find_shards(root) if "train" in splits else None
    judgements: dict[str, Judgements] = {}
    for split in splits:
        if split == "train" and shards:
            continue
        path = find_table(root, split, required=split == "train")
        if path is None:
            continue
        if split == "train":
            train = load_clicks(path, catalog, report, skip_bad_rows)
        else:
            judgements[split] = load_judgements(path, catalog, report, skip_bad_rows)
    return DataDir(root, catalog, report, train, judgements, shards)
