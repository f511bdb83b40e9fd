"""Where a run's click pairs come from, epoch by epoch: the click table in memory (shuffled by the
run's generator) or Parquet shards streamed from disk (planned from seed and epoch, data/stream.py).
Both are a ``ClickSource``, so the training loop never asks which. Every rank draws the same global
batches and keeps its slice (distributed.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader

from make_retrieval.config import Config
from make_retrieval.data.batches import BatchBuilder, ClickDataset, EpochBatches
from make_retrieval.data.pairs import Clicks, DataDir
from make_retrieval.data.stream import BatchIndices, ShardedClicks
from make_retrieval.data.tables import LoadReport
from make_retrieval.errors import ConfigError


class ClickSource(Protocol):
    """A run's training clicks, served as one DataLoader per run, resumable within an epoch."""

    #: Valid click pairs (known once ``pairs`` has been read through).
    pairs_count: int

    def pairs(self, report: LoadReport) -> Iterator[tuple[str, int]]:
        """Every valid (query, product position) click, read once before training (keyword
        mining); a bad row raises, or is counted in ``report`` with ``--skip-bad-rows``."""
        ...

    def fingerprint(self) -> Any:
        """What a resumed run must find unchanged."""
        ...

    def loader(self, collate: BatchBuilder, workers: int) -> DataLoader:
        """Batches collated (images decoded) in ``workers`` processes, in the planned order."""
        ...

    def start(self, epoch: int, skip: int) -> None:
        """Plan ``epoch`` and begin it after its first ``skip`` batches (a resumed run)."""
        ...

    def table(self) -> Clicks | None:
        """The whole click table when it is in memory (hard-negative mining needs it), else None."""
        ...


class InMemoryClicks:
    """The click table of ``train.*`` in memory, reshuffled every epoch by the run's generator."""

    def __init__(self, clicks: Clicks, global_batch: int, generator: torch.Generator):
        self.clicks, self.generator = clicks, generator
        self.pairs_count = len(clicks)
        self.sampler = EpochBatches(len(clicks), global_batch, len(clicks) > global_batch, generator)

    def pairs(self, report: LoadReport) -> Iterator[tuple[str, int]]:
        """The table's pairs (checked when it was loaded)."""
        yield from zip(self.clicks.queries, self.clicks.products, strict=True)

    def fingerprint(self) -> int:
        """The click count."""
        return self.pairs_count

    def loader(self, collate: BatchBuilder, workers: int) -> DataLoader:
        """The workers' base seed is drawn from the run's generator, not the global RNG that dropout
        uses, so a resumed run's dropout masks are the uninterrupted run's."""
        common = {"generator": self.generator, "num_workers": workers, "collate_fn": collate}
        return DataLoader(ClickDataset(self.clicks), batch_sampler=self.sampler, **common)

    def start(self, epoch: int, skip: int) -> None:
        """The sampler draws the epoch's order when it is iterated; only the skip is set here."""
        self.sampler.skip = skip

    def table(self) -> Clicks:
        """The in-memory table."""
        return self.clicks


class StreamedClicks:
    """Parquet click shards read batch by batch (a catalog-scale click log never sits in memory)."""

    def __init__(self, stream: ShardedClicks, generator: torch.Generator, seed: int):
        self.stream, self.generator, self.seed = stream, generator, seed
        self.pairs_count = stream.rows
        self.sampler = BatchIndices(len(stream))

    def pairs(self, report: LoadReport) -> Iterator[tuple[str, int]]:
        """Every row of every shard, checked here once; ``pairs_count`` becomes the valid rows."""
        self.pairs_count = 0
        for pair in self.stream.scan(report):
            self.pairs_count += 1
            yield pair

    def fingerprint(self) -> list[tuple[str, int]]:
        """Every shard's row groups."""
        return self.stream.fingerprint()

    def loader(self, collate: BatchBuilder, workers: int) -> DataLoader:
        """Items are whole global batches already (``batch_size=None``)."""
        common = {"generator": self.generator, "num_workers": workers, "collate_fn": collate}
        return DataLoader(self.stream, batch_size=None, sampler=self.sampler, **common)

    def start(self, epoch: int, skip: int) -> None:
        """The epoch's shard order comes from seed and epoch, so every rank plans the same one."""
        self.stream.set_epoch(epoch, self.seed)
        self.sampler.skip = skip

    def table(self) -> None:
        """Streamed clicks have no table in memory."""
        return None


def click_source(
    data: DataDir, config: Config, world_size: int, generator: torch.Generator, skip_bad_rows: bool
) -> ClickSource:
    """The in-memory table when the data folder has one, else its streamed shards."""
    global_batch = config.train.batch_size * world_size
    if data.train is not None:
        return InMemoryClicks(data.train, global_batch, generator)
    assert data.train_shards is not None
    if config.train.hard_negatives:
        raise ConfigError("train.hard_negatives needs the click table in memory; it is not available with shards")
    stream = ShardedClicks(data.train_shards, data.catalog, global_batch, skip_bad_rows, world_size)
    return StreamedClicks(stream, generator, config.train.seed)
