"""Incremental catalog updates through the CLI: ``sync`` adds, re-embeds and deletes products in a
FAISS folder and in a Milvus Lite copy made by ``to-milvus``, without re-embedding the rest."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from helpers import build_tiny_index, make_data_dir, milvus_writes, write_table
from make_retrieval.cli import app
from make_retrieval.index.folder import open_store
from make_retrieval.pipeline import sync_index, to_milvus
from make_retrieval.retrieval import Index
from make_retrieval.serve.app import create_app


@pytest.fixture()
def built(tiny_bert: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(data dir, index dir) of a briefly trained tiny model."""
    return build_tiny_index(tmp_path, tiny_bert)


def _change_catalog(data_dir: Path) -> None:
    """Add p999 (with an image), retitle p000, move p001 to another category, drop p011."""
    rows = pq.read_table(data_dir / "products.parquet").to_pylist()
    rows = [r for r in rows if r["product_id"] != "p011"]
    rows[0]["title"] = "Brand0 crimson shirt renamed"
    rows[1]["category"] = "blouse"
    Image.new("RGB", (60, 80), (200, 0, 200)).save(data_dir / "images" / "p999.jpg")
    new = {
        "product_id": "p999",
        "title": "Brand9 purple scarf",
        "image": "images/p999.jpg",
        "category": "scarf",
        "base_colour": "purple",
    }
    write_table(data_dir / "products.parquet", [*rows, new])


def _search(index: Path, query: str, category: str | None = None, mode: str = "dense") -> list[dict]:
    args = ["search", "--index", str(index), query, "-k", "50", "--json", "--mode", mode]
    result = CliRunner().invoke(app, args + (["--category", category] if category else []))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["results"]


@pytest.mark.parametrize("backend", ["faiss", "milvus-lite"])
def test_sync_adds_updates_and_deletes_in_place(built: tuple[Path, Path], tmp_path: Path, backend: str) -> None:
    data_dir, index = built
    runner = CliRunner()
    if backend == "milvus-lite":
        out = tmp_path / "milvus-index"
        args = ["to-milvus", "--index", str(index), "--uri", str(tmp_path / "m.db"), "--out", str(out)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "32 products in Milvus collection 'products'" in result.output, result.output
        assert runner.invoke(app, args).exit_code == 2  # the collection exists: refused without --replace
        index = out
    before = {r["product_id"]: r for r in _search(index, "shirt")}
    _change_catalog(data_dir)
    result = runner.invoke(app, ["sync", "--index", str(index), "--data", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "added 1, re-embedded 2, deleted 1, unchanged 29; lexical channel rebuilt" in result.output
    store = open_store(index)
    assert len(store) == 32 and store.get(["p011"]) == [None]
    assert store.get(["p000"])[0].title == "Brand0 crimson shirt renamed"
    assert store.get(["p999"])[0].image == "images/p999.jpg" and "scarf" in store.categories()
    assert [r["product_id"] for r in _search(index, "scarf", category="scarf")] == ["p999"]
    assert [r["product_id"] for r in _search(index, "shirt", category="blouse")] == ["p001"]

    def unchanged_products_keep_their_vectors() -> None:
        after = {r["product_id"]: r for r in _search(index, "shirt")}
        for pid in ("p100", "p101", "p200"):
            assert after[pid]["weights"] == before[pid]["weights"]
            assert after[pid]["score"] == pytest.approx(before[pid]["score"], abs=1e-5)

    unchanged_products_keep_their_vectors()
    lexical = lambda query: [r["product_id"] for r in _search(index, query, mode="lexical")]  # noqa: E731
    assert lexical("purple") == ["p999"] and lexical("crimson") == ["p000"], "added and retitled are found"
    assert "p011" not in lexical("brand1 heels"), "a deleted product is gone from the lexical channel"
    assert "p000" not in lexical("classic") and len(lexical("classic")) == 30, "a retitled one lost its old words"
    hybrid = _search(index, "purple scarf", mode="hybrid")
    assert hybrid[0]["product_id"] == "p999" and "lexical" in hybrid[0]["channels"]
    # nothing to do: a second sync saves the folder it loaded (memory-mapped vectors) and changes nothing
    result = runner.invoke(app, ["sync", "--index", str(index), "--data", str(data_dir)])
    assert result.exit_code == 0 and "added 0, re-embedded 0, deleted 0, unchanged 32 ->" in result.output
    unchanged_products_keep_their_vectors()
    assert lexical("purple") == ["p999"]


def test_sync_refuses_another_catalog_folder(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, index = built
    other = make_data_dir(tmp_path / "other")
    result = CliRunner().invoke(app, ["sync", "--index", str(index), "--data", str(other)])
    assert result.exit_code == 2 and "sync it from that folder" in result.output


@pytest.mark.slow
def test_sync_on_a_milvus_server_touches_only_the_changes_and_search_keeps_answering(
    built: tuple[Path, Path], tmp_path: Path, milvus_uri: str
) -> None:
    """On a real server: sync sends exactly the added and changed products' rows and the deleted
    ids (counted where they leave for Milvus), while the service searches the same collection."""
    data_dir, faiss_index = built
    index = tmp_path / "server-index"
    copy = to_milvus(faiss_index, milvus_uri, f"sync_{uuid.uuid4().hex[:8]}", index)
    assert len(copy) == 32
    client = TestClient(create_app(Index.open(index, encoder="torch"), data_dir))
    statuses: list[int] = []
    syncing = threading.Event()

    def search_while_syncing() -> None:
        while not statuses or syncing.is_set():
            statuses.append(client.get("/search", params={"q": "red shirt", "k": 5}).status_code)

    _change_catalog(data_dir)
    syncing.set()
    searching = threading.Thread(target=search_while_syncing)
    searching.start()
    with milvus_writes() as sent:
        report = sync_index(index, data_dir)
    syncing.clear()
    searching.join()
    assert (report.added, report.updated, report.deleted, report.unchanged) == (1, 2, 1, 29)
    assert sorted(sent["upserted"]) == ["p000", "p001", "p999"] and sent["deleted"] == ["p011"]
    assert statuses and set(statuses) == {200}, f"{len(statuses)} searches during the sync: {set(statuses)}"
    assert open_store(index).get(["p011", "p999"])[1].title == "Brand9 purple scarf"
