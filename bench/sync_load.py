"""``sync`` of a Milvus-server index of 10^5 products after 1% of the catalog changed, while the search
service answers a loopback load: what sync sends to the server, how long it takes, and the load's errors.

The catalog and model are ``bench/ingest_memory.py``'s (random titles, a tiny random text-only model,
384-d vectors); ``embed --milvus-uri`` writes them into a collection with the ``--index`` structure on a
Milvus 2.3 server started here as the tests start it (tests/milvus_server.py), and the script waits until
the server searches every row through that index. Then ``--change`` of the products change: a third get
a new title, a third leave the catalog, a third are new. ``make-retrieval serve`` answers
``GET /search`` from the same collection (``bench/serve_load.py``'s load generator, in windows of
two seconds until the sync ends) while ``sync_index`` runs in this process, with ``MilvusIndex.add`` and
``delete`` wrapped to count the product ids sent to the server.

    python bench/sync_load.py --count 100000 --change 0.01
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import pyarrow as pa
import pyarrow.parquet as pq
from ingest_memory import catalog, tiny_run
from pymilvus import MilvusClient
from serve_load import load, wait_healthy

from make_retrieval.index.folder import open_store
from make_retrieval.pipeline import SyncReport, sync_index

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from milvus_server import milvus_server, wait_until_indexed

from helpers import milvus_writes

COLLECTION = "products"


def change_catalog(data: Path, share: float, seed: int = 1) -> dict[str, list[str]]:
    """Rewrite ``data``'s products table with ``share`` of its rows changed: a third retitled, a third
    removed, a third added. Returns the ids of each kind."""
    table = pq.read_table(data / "products.parquet").to_pylist()
    rng = random.Random(seed)
    picked = rng.sample(range(len(table)), int(len(table) * share))
    third = len(picked) // 3
    retitled, removed = picked[:third], set(picked[third : 2 * third])
    for i in retitled:
        table[i]["title"] = f"changed {table[i]['title']}"
    added = [{"product_id": f"n{i:07d}", "title": f"new product w{i}", "category": "c0"} for i in range(third)]
    kept = [row for i, row in enumerate(table) if i not in removed] + added
    pq.write_table(pa.Table.from_pylist(kept), data / "products.parquet")
    return {
        "updated": sorted(table[i]["product_id"] for i in retitled),
        "deleted": sorted(table[i]["product_id"] for i in removed),
        "added": sorted(row["product_id"] for row in added),
    }


def counted_sync(index: Path, data: Path) -> tuple[SyncReport, dict[str, list[str]], float]:
    """``sync_index`` with the ids it upserts and deletes on the server recorded; and its seconds."""
    with milvus_writes() as sent:
        started = time.perf_counter()
        report = sync_index(index, data)
        return report, sent, time.perf_counter() - started


def cli(*args: str) -> subprocess.Popen:
    """``make-retrieval ARGS`` in its own process."""
    return subprocess.Popen([sys.executable, "-m", "make_retrieval.cli", *args])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--change", type=float, default=0.01, help="share of the catalog that changes")
    # no "flat": the server loads a FLAT collection's segments without an index id, so the wait until
    # every row is searched through the index (tests/milvus_server.py) would never end
    parser.add_argument("--index", default="hnsw", choices=["hnsw", "ivfpq"])
    parser.add_argument("--clients", type=int, default=4, help="concurrent search clients during the sync")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    with TemporaryDirectory(prefix="sync-bench-") as tmp, milvus_server(Path(tmp) / "milvus") as uri:
        root = Path(tmp)
        data, run, index = catalog(root / "data", args.count), tiny_run(root / "run", 384), root / "index"
        embedding = ["embed", "--run-dir", str(run), "--data", str(data), "--out", str(index), "--milvus-uri", uri]
        if cli(*embedding, "--index", args.index, "--batch-size", "1024").wait():
            raise SystemExit("embed failed")
        started = time.perf_counter()
        wait_until_indexed(MilvusClient(uri), COLLECTION, args.count, timeout_s=1200)
        print(json.dumps({"count": args.count, "index": args.index, "indexed_s": round(time.perf_counter() - started)}))
        expected = change_catalog(data, args.change)
        url = f"http://127.0.0.1:{args.port}"
        server = cli("serve", "--index", str(index), "--port", str(args.port), "--encoder", "torch")
        try:
            wait_healthy(url, server)
            queries = [f"w{i} w{i + 1}" for i in range(0, 2000, 2)]
            before = asyncio.run(load(url, queries, args.clients, 5, 10))
            outcome: list = []
            syncing = threading.Thread(target=lambda: outcome.append(counted_sync(index, data)))
            syncing.start()
            during = []
            while syncing.is_alive():
                during.append(asyncio.run(load(url, queries, args.clients, 2, 10)))
            syncing.join()
        finally:
            server.terminate()
            server.wait(timeout=30)
        report, sent, seconds = outcome[0]
        ids = expected["updated"] + expected["deleted"] + expected["added"]
        store = open_store(index)
        on_server = dict(zip(ids, store.get(ids), strict=True))
        print(json.dumps({
            "sync_s": round(seconds, 1),
            "report": {"added": report.added, "updated": report.updated, "deleted": report.deleted,
                       "unchanged": report.unchanged},
            "upserted": len(sent["upserted"]),
            "upserted_exactly_the_changes": sorted(sent["upserted"]) == sorted(expected["updated"] + expected["added"]),
            "deleted": len(sent["deleted"]),
            "deleted_exactly_the_removed": sorted(sent["deleted"]) == expected["deleted"],
            "rows_after": len(store),
            "changes_on_the_server": all(on_server[i] is None for i in expected["deleted"])
            and all(on_server[i].title.startswith("changed ") for i in expected["updated"])
            and all(on_server[i] is not None for i in expected["added"]),
            "load_before": before,
            "load_during": {
                "windows": len(during),
                "requests": sum(w["requests"] for w in during),
                "errors": sum(w["errors"] for w in during),
                "p50_ms_worst_window": max(w["p50_ms"] for w in during),
                "p99_ms_worst_window": max(w["p99_ms"] for w in during),
            },
        }, indent=1))


if __name__ == "__main__":
    main()
