"""Reading the three table formats (Parquet, JSONL, CSV) into rows, with errors that name file and row.

Every value is kept as read (CSV gives strings) and checked by the readers in ``catalog``/``pairs``;
CSV is read as text on purpose so that ids like ``00123`` keep their leading zeros.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.parquet as pq
from tqdm.auto import tqdm

from make_retrieval.errors import DataError
from make_retrieval.files import replacing

T = TypeVar("T")

#: Extensions in the order they are looked for; the first one found is read (docs/METHOD.md).
TABLE_EXTENSIONS = (".parquet", ".jsonl", ".csv")


@dataclass(frozen=True)
class TextOnly:
    """A product kept without its image: its id, row in the products table, image as given, and why
    (``none given``, ``missing`` or ``corrupt``)."""

    product_id: str
    row: int
    image: str
    reason: str


@dataclass
class LoadReport:
    """What loading skipped or degraded; printed by the CLI and saved with a run."""

    skipped_rows: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    #: Products indexed by their title alone (what ``embed`` lists in text_only.csv).
    text_only_products: list[TextOnly] = field(default_factory=list)

    @property
    def text_only(self) -> Counter:
        """Text-only products by reason."""
        return Counter(p.reason for p in self.text_only_products)

    def write_text_only(self, path: Path) -> int:
        """``path`` as CSV: product_id, row, image, reason of every text-only product; their count."""
        with replacing(path) as temporary, temporary.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["product_id", "row", "image", "reason"])
            writer.writerows((p.product_id, p.row, p.image, p.reason) for p in self.text_only_products)
        return len(self.text_only_products)

    def skip(self, error: DataError) -> None:
        """Count a bad row that ``--skip-bad-rows`` allowed us to drop."""
        self.skipped_rows[Path(error.file).name] += 1
        if len(self.examples) < 10:
            self.examples.append(str(error))

    def lines(self) -> list[str]:
        """Human-readable summary, empty when nothing happened."""
        out = [f"skipped {n} bad row(s) in {name}" for name, n in sorted(self.skipped_rows.items())]
        out += self.examples
        out += [f"{n} product(s) kept text-only: image {why}" for why, n in sorted(self.text_only.items())]
        return out

    def announce(self) -> None:
        """Print the summary to stderr (through tqdm, so progress bars are not broken)."""
        for line in self.lines():
            tqdm.write(f"data: {line}", file=sys.stderr)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, saved as ``data_report.json`` in a run."""
        return {
            "skipped_rows": dict(self.skipped_rows),
            "examples": self.examples,
            "text_only": dict(self.text_only),
        }


def find_table(data_dir: Path, name: str, required: bool = True) -> Path | None:
    """The first of ``name.parquet|jsonl|csv`` in ``data_dir``."""
    for ext in TABLE_EXTENSIONS:
        path = data_dir / f"{name}{ext}"
        if path.exists():
            return path
    if required:
        wanted = ", ".join(f"{name}{e}" for e in TABLE_EXTENSIONS)
        raise DataError(data_dir, f"no {name} table found (looked for {wanted})")
    return None


#: The folder of a data directory that holds training shards (instead of a ``train.*`` table).
SHARD_FOLDER = "train"


def find_shards(data_dir: Path) -> list[Path] | None:
    """The sorted ``train/*.parquet`` shards of ``data_dir`` (data/stream.py), or None if there are
    none; shards beside a ``train`` table are ambiguous."""
    shards = sorted((data_dir / SHARD_FOLDER).glob("*.parquet"))
    if not shards:
        return None
    table = find_table(data_dir, SHARD_FOLDER, required=False)
    if table is not None:
        raise DataError(data_dir, f"both {table.name} and {SHARD_FOLDER}/*.parquet shards; keep one of them")
    return shards


def read_rows(path: Path, required_columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(row_number, row)`` for every data row of ``path``; row numbers start at 1."""
    try:
        if path.suffix == ".parquet":
            rows = _parquet_rows(path)
        elif path.suffix == ".jsonl":
            rows = _jsonl_rows(path)
        elif path.suffix == ".csv":
            rows = _csv_rows(path)
        else:
            raise DataError(path, f"unsupported table format '{path.suffix}'")
        first = next(rows, None)
    except DataError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:  # pyarrow errors are ValueErrors
        raise DataError(path, f"cannot read file: {exc}") from exc
    if first is None:
        return
    _check_columns(path, first[1], required_columns)
    yield first
    try:
        yield from rows
    except DataError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise DataError(path, f"cannot read file: {exc}") from exc


def parse_rows(
    path: Path,
    required_columns: tuple[str, ...],
    parse: Callable[[int, dict[str, Any]], T],
    report: LoadReport,
    skip_bad_rows: bool,
) -> Iterator[T]:
    """``parse`` every row; a DataError stops the read, or with ``skip_bad_rows`` is counted and skipped."""
    for number, row in read_rows(path, required_columns):
        try:
            yield parse(number, row)
        except DataError as error:
            if not skip_bad_rows:
                raise
            report.skip(error)


def _check_columns(path: Path, row: dict[str, Any], required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in row]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; found {sorted(row)}", field=missing[0])


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    parquet = pq.ParquetFile(path)
    number = 0
    for batch in parquet.iter_batches(batch_size=65536):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    number = 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            number += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"invalid JSON: {exc.msg}", row=number) from exc
            if not isinstance(row, dict):
                raise DataError(path, "expected a JSON object per line", row=number)
            yield number, row


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    # utf-8-sig: spreadsheet programs start CSV files with a byte-order mark
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for number, row in enumerate(reader, start=1):
            if None in row:
                raise DataError(path, "more values than header columns", row=number)
            yield number, {k: (None if v == "" else v) for k, v in row.items()}


def text_field(path: Path, row_number: int, row: dict[str, Any], name: str) -> str:
    """A required non-empty string field; integers (also 123.0 from a float column) become text."""
    value = row.get(name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise DataError(path, f"must be a non-empty string, got {value!r}", row=row_number, field=name)
    return value.strip()
