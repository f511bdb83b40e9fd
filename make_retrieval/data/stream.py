"""Streaming click shards: a ``train/`` folder of Parquet files read lazily, for click logs that do
not fit in memory.

The epoch is planned from the shards' footers alone: the row groups in a seeded order, the rows of
each group in a seeded order, cut into global batches of consecutive rows. Global batch ``i`` is item
``i`` of a map-style dataset, so a DataLoader's workers each read the row groups of the batches they
are handed (one decoded group cached per worker) and decode images in parallel. Because batches are
addressed by index, the order depends on neither the number of workers nor the number of ranks, and
a resumed run starts at batch ``i`` without reading what came before.

Every rank plans the same global batches and keeps its slice (as the in-memory path does, see
distributed.py): the click text is read by every rank, the images only by the rank that trains
on them. Rows are shuffled within a row group and groups among themselves, not globally: write shards
from a shuffled log (as webdataset advises), with row groups of at most about a million rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from torch.utils.data import Dataset, Sampler

from make_retrieval.data.batches import Item
from make_retrieval.data.catalog import Catalog
from make_retrieval.data.pairs import CLICK_COLUMNS, parse_click
from make_retrieval.data.tables import LoadReport
from make_retrieval.errors import DataError


@dataclass(frozen=True)
class RowGroup:
    """One Parquet row group: the unit that is read, shuffled and cached."""

    file: Path
    index: int
    rows: int
    #: rows of the file before this group (for 1-based row numbers in errors)
    offset: int


def row_groups(shards: list[Path]) -> list[RowGroup]:
    """Every row group of ``shards``, read from the footers; a shard without a click column fails."""
    groups = []
    for shard in shards:
        try:
            meta = pq.ParquetFile(shard).metadata
        except (OSError, ValueError) as exc:  # pyarrow errors are ValueErrors
            raise DataError(shard, f"cannot read Parquet footer: {exc}") from exc
        names = set(meta.schema.names)
        missing = [c for c in CLICK_COLUMNS if c not in names]
        if missing:
            raise DataError(shard, f"missing column(s) {missing}; found {sorted(names)}", field=missing[0])
        offset = 0
        for index in range(meta.num_row_groups):
            rows = meta.row_group(index).num_rows
            groups.append(RowGroup(shard, index, rows, offset))
            offset += rows
    return groups


class ShardedClicks(Dataset):
    """Item ``i`` is global batch ``i`` of the current epoch: a list of (query, product, weight).

    ``batch_size`` is the global batch; ``multiple`` (the number of ranks) trims a batch that lost
    bad rows (with ``skip_bad_rows``) so that it still splits evenly over the ranks. ``scan`` reads
    every row once in the main process before training: bad rows stop the run (or are counted) there,
    not hours later in a worker process.
    """

    def __init__(
        self, shards: list[Path], catalog: Catalog, batch_size: int, skip_bad_rows: bool = False, multiple: int = 1
    ):
        self.catalog, self.batch_size, self.skip_bad_rows, self.multiple = catalog, batch_size, skip_bad_rows, multiple
        self.groups = row_groups(shards)
        self.rows = sum(g.rows for g in self.groups)
        if self.rows == 0:
            raise DataError(shards[0].parent, "no training pairs in the shards")
        self._cached: tuple[int, dict[str, list[Any]], np.ndarray] | None = None
        self.set_epoch(0, 0)

    def fingerprint(self) -> list[tuple[str, int]]:
        """(shard name, rows) of every row group: what a resumed run must find unchanged."""
        return [(g.file.name, g.rows) for g in self.groups]

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Plan ``epoch``: group order and row orders are drawn from (seed, epoch) alone."""
        self.seed, self.epoch = seed, epoch
        rng = np.random.default_rng([seed, epoch])
        self.order = rng.permutation(len(self.groups))
        self.starts = np.concatenate([[0], np.cumsum([self.groups[g].rows for g in self.order])])
        self._cached = None

    def __len__(self) -> int:
        # a partial last batch is dropped, as the in-memory sampler does, unless it is the only one
        return max(1, self.rows // self.batch_size)

    def __getitem__(self, index: int) -> list[Item]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        first, last = index * self.batch_size, min((index + 1) * self.batch_size, self.rows)
        items = [item for item in self._items(first, last) if item is not None]
        items = items[: len(items) - len(items) % self.multiple]
        if not items:
            raise DataError(self.groups[self.order[0]].file.parent, f"batch {index}: too few valid rows left")
        return items

    def _items(self, first: int, last: int) -> Iterator[Item | None]:
        """The parsed rows at epoch positions ``first..last-1`` (None for a skipped bad row)."""
        slot = int(np.searchsorted(self.starts, first, side="right")) - 1
        while first < last:
            position = int(self.order[slot])
            columns, rows = self._group(position)
            end = min(last, int(self.starts[slot + 1]))
            for at in rows[first - int(self.starts[slot]) : end - int(self.starts[slot])]:
                yield self._parse(position, columns, int(at))
            first, slot = end, slot + 1

    def _parse(
        self, position: int, columns: dict[str, list[Any]], at: int, report: LoadReport | None = None
    ) -> Item | None:
        """Row ``at`` of group ``position``; a bad row raises DataError(shard, row, field), or with
        ``skip_bad_rows`` gives None (counted in ``report`` if one is given)."""
        group = self.groups[position]
        row = {name: values[at] for name, values in columns.items()}
        try:
            return parse_click(group.file, group.offset + at + 1, row, self.catalog)
        except DataError as error:
            if not self.skip_bad_rows:
                raise
            if report is not None:
                report.skip(error)
            return None

    def _group(self, position: int) -> tuple[dict[str, list[Any]], np.ndarray]:
        """Row group ``position``'s click columns and this epoch's row order (cached: a worker's
        next batch is usually in the same group)."""
        if self._cached is None or self._cached[0] != position:
            group = self.groups[position]
            parquet = pq.ParquetFile(group.file)
            wanted = [c for c in (*CLICK_COLUMNS, "weight") if c in parquet.schema_arrow.names]
            columns = parquet.read_row_group(group.index, columns=wanted).to_pydict()
            rows = np.random.default_rng([self.seed, self.epoch, position]).permutation(group.rows)
            self._cached = (position, columns, rows)
        return self._cached[1], self._cached[2]

    def scan(self, report: LoadReport) -> Iterator[tuple[str, int]]:
        """Every valid (query, product) pair, group by group in file order, checking every row: for
        fitting keywords, or just for the check. Skipped rows are counted in ``report``."""
        for position in range(len(self.groups)):
            columns, _ = self._group(position)
            for at in range(self.groups[position].rows):
                item = self._parse(position, columns, at, report)
                if item is not None:
                    yield item[0], item[1]
        self._cached = None


class BatchIndices(Sampler[int]):
    """Batch indices ``skip, skip+1, ..., n-1``: the DataLoader hands them to workers in turn and
    yields their batches in this order, so resuming at batch ``skip`` is exact."""

    def __init__(self, count: int):
        self.count, self.skip = count, 0

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[int]:
        # a generator: the DataLoader makes (and drops) an iterator before the one it reads, and the
        # skip must be consumed by the one that is read
        skip, self.skip = self.skip, 0
        yield from range(skip, self.count)
