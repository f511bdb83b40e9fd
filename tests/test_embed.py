"""Sharded catalog embedding (embed.py): the same vectors as one pass, resumable shard by shard, and
spread over the ranks of a torchrun job."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import make_retrieval.embed as embed_module
from helpers import tiny_model_config
from make_retrieval.config import Config
from make_retrieval.data.catalog import load_catalog
from make_retrieval.data.tables import LoadReport
from make_retrieval.distributed import Distributed
from make_retrieval.embed import embed_catalog, embed_products
from make_retrieval.index.faiss_index import ProductIndex
from make_retrieval.index.folder import open_store
from make_retrieval.index.milvus_index import MilvusIndex
from make_retrieval.index.store import read_manifest
from make_retrieval.model.make import MAKEModel
from make_retrieval.train.loop import train


def test_shards_equal_one_pass_and_a_rerun_redoes_only_what_is_missing(
    tiny_bert: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = MAKEModel(tiny_model_config(tiny_bert))
    catalog = load_catalog(data_dir, LoadReport())
    whole = embed_products(model, catalog, batch_size=8, progress=False)

    embedded: list[int] = []
    crashed: list[bool] = []
    real = embed_module.embed_products

    def crash_on_third(*args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        positions = kwargs.get("positions", args[5] if len(args) > 5 else None)
        assert isinstance(positions, range)
        if positions.start == 10 and not crashed:
            crashed.append(True)
            raise KeyboardInterrupt  # killed while embedding the third shard
        embedded.append(positions.start)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(embed_module, "embed_products", crash_on_third)
    shards = tmp_path / "shards"
    with pytest.raises(KeyboardInterrupt):
        embed_catalog(model, catalog, shards, "sha-a", Distributed(), shard_size=5, progress=False)
    assert sorted(p.name for p in shards.iterdir()) == ["shard-00000.npz", "shard-00001.npz"]
    embedded.clear()
    files = embed_catalog(model, catalog, shards, "sha-a", Distributed(), shard_size=5, progress=False)
    assert files is not None and [f.positions for f in files] == [range(s, min(s + 5, 32)) for s in range(0, 32, 5)]
    assert embedded == [10, 15, 20, 25, 30], "32 products in shards of 5: the first two are kept"
    parts = [f.load() for f in files]
    for got, want in zip((np.concatenate(column) for column in zip(*parts, strict=True)), whole, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)

    embedded.clear()
    catalog.titles[12] = "a renamed product"
    embed_catalog(model, catalog, shards, "sha-a", Distributed(), shard_size=5, progress=False)
    assert embedded == [10], "a changed title makes its shard stale"
    (shards / "shard-00003.npz").write_bytes(b"truncated")
    embedded.clear()
    embed_catalog(model, catalog, shards, "sha-a", Distributed(), shard_size=5, progress=False)
    assert embedded == [15], "an unreadable shard file is redone"
    embedded.clear()
    embed_catalog(model, catalog, shards, "sha-b", Distributed(), shard_size=5, progress=False)
    assert embedded == [0, 5, 10, 15, 20, 25, 30], "another model: every shard is stale"


def _embed_command(tiny_config: Config, data_dir: Path, tmp_path: Path) -> list[str]:
    """``embed`` of a one-step tiny run over ``data_dir`` (without --out), as python arguments."""
    tiny_config.train.max_steps, tiny_config.train.validate = 1, False
    train(tiny_config, data_dir, tmp_path / "run", progress=False)
    return ["-m", "make_retrieval.cli", "embed", "--run-dir", str(tmp_path / "run"), "--data", str(data_dir)]


def _run(args: list[str], ranks: int = 1) -> subprocess.CompletedProcess:
    """``python ARGS``, or under torchrun with ``ranks`` ranks of one thread each; it must succeed."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)] if ranks > 1 else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if ranks > 1 else None
    done = subprocess.run([sys.executable, *launcher, *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_torchrun_embeds_the_catalog_over_two_ranks(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    base = _embed_command(tiny_config, data_dir, tmp_path)
    _run([*base, "--out", str(tmp_path / "one")])
    two = _run([*base, "--out", str(tmp_path / "two"), "--shard-size", "5", "--workers", "1"], ranks=2)
    assert two.stdout.count("indexed 32 products") == 1, "rank 0 alone builds the index"
    assert not (tmp_path / "two" / "shards").exists(), "shards are merged, then removed"
    np.testing.assert_allclose(
        np.load(tmp_path / "two" / "embeddings.npy"), np.load(tmp_path / "one" / "embeddings.npy"), atol=1e-6
    )
    tables = [pq.read_table(tmp_path / name / "products.parquet").to_pydict() for name in ("one", "two")]
    assert tables[0]["product_id"] == tables[1]["product_id"]


@pytest.mark.slow
def test_torchrun_ranks_write_their_shards_straight_into_a_milvus_server(
    tiny_config: Config, data_dir: Path, tmp_path: Path, milvus_uri: str
) -> None:
    """``embed --milvus-uri`` under torchrun: each rank upserts its own shards (rank 0 merges nothing);
    the collection then holds every product with the vectors a single FAISS pass gives; Milvus Lite
    takes the same path in one process."""
    base = _embed_command(tiny_config, data_dir, tmp_path)
    _run([*base, "--out", str(tmp_path / "faiss")])
    collection = f"ingest_{uuid.uuid4().hex[:8]}"
    server = [*base, "--out", str(tmp_path / "server"), "--milvus-uri", milvus_uri, "--collection", collection]
    two = _run([*server, "--shard-size", "5"], ranks=2)
    assert two.stdout.count("indexed 32 products") == 1 and not (tmp_path / "server" / "shards").exists()
    _run([*base, "--out", str(tmp_path / "lite"), "--milvus-uri", str(tmp_path / "lite.db")])
    reference = open_store(tmp_path / "faiss")
    assert isinstance(reference, ProductIndex)
    queries = reference.vectors[:5]
    for folder in ("server", "lite"):
        store = open_store(tmp_path / folder)
        assert isinstance(store, MilvusIndex) and len(store) == 32
        assert sorted(store.ids()) == sorted(reference.ids()) and store.categories() == reference.categories()
        for got, want in zip(store.search(queries, 5), reference.search(queries, 5), strict=True):
            assert [h.product_id for h in got] == [h.product_id for h in want]
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-4)
        # rank 0 built the lexical channel beside the collection and chose the same fusion on valid
        assert read_manifest(tmp_path / folder)["hybrid"] == read_manifest(tmp_path / "faiss")["hybrid"]
        assert (tmp_path / folder / "lexical" / "lexical.json").is_file()
        ids = ["p000", "nope"]
        np.testing.assert_allclose(store.vectors_of(ids), reference.vectors_of(ids), atol=1e-6)
