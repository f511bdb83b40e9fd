"""Streaming click shards (data/stream.py): every row once per epoch, batches independent of workers
and resumable by index, clear errors, and memory that stays flat over a log larger than the cap."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from torch.utils.data import DataLoader

from helpers import shard_train
from make_retrieval.config import Config
from make_retrieval.data.catalog import load_catalog
from make_retrieval.data.pairs import load_data_dir
from make_retrieval.data.stream import BatchIndices, ShardedClicks
from make_retrieval.data.tables import LoadReport
from make_retrieval.errors import DataError
from make_retrieval.train.loop import train


def _stream(data_dir: Path, batch_size: int = 8, **kwargs: object) -> ShardedClicks:
    data = load_data_dir(data_dir, ("train",))
    assert data.train is None and data.train_shards is not None, "shards are listed, not loaded"
    return ShardedClicks(data.train_shards, data.catalog, batch_size, **kwargs)  # type: ignore[arg-type]


def test_an_epoch_reads_every_row_once_in_a_seeded_order(data_dir: Path) -> None:
    clicks = load_data_dir(data_dir, ("train",)).train
    assert clicks is not None
    want = Counter(zip(clicks.queries, clicks.products, clicks.weights, strict=True))
    stream = _stream(shard_train(data_dir))
    assert len(stream.groups) == 14 and len(stream) == 8  # 3 shards of 22/22/20 rows in groups of <= 5
    first = [stream[i] for i in range(len(stream))]
    assert Counter(item for batch in first for item in batch) == want
    stream.set_epoch(1, 0)
    second = [stream[i] for i in range(len(stream))]
    assert Counter(item for batch in second for item in batch) == want and second != first
    stream.set_epoch(0, 0)
    assert [stream[i] for i in range(len(stream))] == first, "the plan depends on (seed, epoch) alone"
    assert Counter(stream.scan(LoadReport())) == Counter(zip(clicks.queries, clicks.products, strict=True))


def test_batches_do_not_depend_on_workers_and_resume_by_index(data_dir: Path) -> None:
    stream = _stream(shard_train(data_dir))

    def batches(workers: int, skip: int = 0) -> list[list]:
        indices = BatchIndices(len(stream))
        indices.skip = skip
        loader = DataLoader(stream, batch_size=None, sampler=indices, num_workers=workers, collate_fn=list)
        return list(loader)

    alone = batches(0)
    assert batches(2) == alone
    assert batches(2, skip=3) == alone[3:]


def test_bad_rows_name_shard_row_and_field(data_dir: Path) -> None:
    shard_train(data_dir, shards=2, group_rows=4)
    shard = data_dir / "train" / "part-00001.parquet"
    rows = pq.read_table(shard).to_pylist()
    rows[5]["product_id"] = "nope"
    pq.write_table(pa.Table.from_pylist(rows), shard, row_group_size=4)
    stream = _stream(data_dir, batch_size=64)
    with pytest.raises(DataError, match=r"part-00001\.parquet.*row 6.*product_id.*nope"):
        stream[0]
    lenient = _stream(data_dir, batch_size=64, skip_bad_rows=True, multiple=2)
    assert len(lenient[0]) == 62, "the bad row goes and the batch is trimmed to split over 2 ranks"

    pq.write_table(pa.Table.from_pylist([{"query": "red shirt"}]), shard)
    with pytest.raises(DataError, match=r"part-00001\.parquet.*missing column.*product_id"):
        _stream(data_dir)


def test_training_checks_every_shard_row_before_it_starts(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    shard_train(data_dir, shards=2, group_rows=4)
    shard = data_dir / "train" / "part-00001.parquet"
    rows = pq.read_table(shard).to_pylist()
    rows[-1]["query"] = " "
    pq.write_table(pa.Table.from_pylist(rows), shard, row_group_size=4)
    tiny_config.train.num_workers = 2  # a worker's error would surface as a bare RuntimeError
    tiny_config.model.keyword_enhancement = False  # no keyword pass: the check must still read every row
    with pytest.raises(DataError, match=r"part-00001\.parquet, row 32, field 'query'"):
        train(tiny_config, data_dir, tmp_path / "strict", progress=False)
    assert not (tmp_path / "strict" / "last.pt").exists()
    result = train(tiny_config, data_dir, tmp_path / "lenient", skip_bad_rows=True, progress=False)
    report = json.loads((tmp_path / "lenient" / "data_report.json").read_text())
    assert report["skipped_rows"] == {"part-00001.parquet": 1} and result.steps == 4
    summary = json.loads((tmp_path / "lenient" / "train_summary.json").read_text())
    assert summary["train_pairs"] == 63


RSS_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from make_retrieval.data.catalog import load_catalog
    from make_retrieval.data.stream import ShardedClicks
    from make_retrieval.data.tables import LoadReport

    def rss_mb():  # the current resident set, sampled: ru_maxrss may hold an earlier, unrelated peak
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20

    root = Path(sys.argv[1])
    catalog = load_catalog(root, LoadReport())
    before = rss_mb()
    stream = ShardedClicks(sorted((root / "train").glob("*.parquet")), catalog, 512)
    rows, samples, tenth = 0, [], len(stream) // 10
    for i in range(len(stream)):
        rows += len(stream[i])
        if i % 20 == 0 or i == tenth:
            samples.append((i, rss_mb()))
    # after a tenth of the log parquet's buffers and one cached row group are in place
    settled = max(rss for i, rss in samples if i <= tenth)
    print(rows, before, settled, max(rss for _, rss in samples))
    """
)


def test_streaming_a_log_larger_than_the_cap_keeps_memory_flat(data_dir: Path) -> None:
    """1.2M clicks with 200-character queries (about 235 MB as Arrow, more as Python rows) are read
    by a process whose RSS grows by less than a 64 MB cap, and not at all after the first tenth."""
    catalog = load_catalog(data_dir, LoadReport())
    (data_dir / "train.parquet").unlink()
    (data_dir / "train").mkdir()
    rng = np.random.default_rng(0)
    shards, rows_per_shard, width = 20, 60_000, 200
    for n in range(shards):
        letters = rng.integers(ord("a"), ord("z") + 1, size=(rows_per_shard, width), dtype=np.uint8)
        queries = pa.array(letters.view(f"S{width}").ravel()).cast(pa.string())
        products = pa.array(np.asarray(catalog.product_ids)[rng.integers(0, len(catalog.product_ids), rows_per_shard)])
        table = pa.table({"query": queries, "product_id": products})
        pq.write_table(table, data_dir / "train" / f"part-{n:05d}.parquet", row_group_size=10_000)
    size_mb = sum(
        pq.ParquetFile(p).metadata.row_group(g).total_byte_size
        for p in (data_dir / "train").glob("*.parquet")
        for g in range(pq.ParquetFile(p).metadata.num_row_groups)
    ) / 2**20
    cap_mb = 64
    assert size_mb > 3 * cap_mb

    output = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(data_dir)], capture_output=True, text=True, check=True
    ).stdout
    rows, before, settled, after = map(int, output.split())
    assert rows == shards * rows_per_shard // 512 * 512, "every full batch was read"
    assert after - before < cap_mb, f"RSS grew from {before} MB to {after} MB over a {size_mb:.0f} MB log"
    assert after - settled < 8, f"RSS kept growing after a tenth of the log: {settled} MB, then {after} MB"
