"""Load and latency of the running search service: a bounded load generator on loopback.

Starts ``make-retrieval serve`` on an index folder, waits for /healthz, then for each concurrency
level keeps that many clients each sending ``GET /search`` back to back (queries drawn from the data
directory's test split) for ``--seconds``; reports QPS, p50/p95/p99 latency and errors. The generator
shares the machine's cores with the service, so the figures are a floor for a separate client host.

    python bench/serve_load.py --index runs/demo/index --data data/demo --concurrency 8 32 64 --seconds 60

``--modes dense hybrid`` measures each search mode in turn at every concurrency, on the same service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from common import queries_of


async def load(url: str, queries: list[str], clients: int, seconds: float, k: int, mode: str = "dense") -> dict:
    """``clients`` concurrent loops of GET /search for ``seconds``; latency percentiles in ms. Each
    client has its own connection (one httpx pool per client: a shared pool of 64 connections costs
    the generator a whole core, which the service then lacks)."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await http.get("/search", params={"q": rng.choice(queries), "k": k, "mode": mode})
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(seed) for seed in range(clients)))
    elapsed = time.perf_counter() - started
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) if latencies else (float("nan"),) * 3
    return {
        "mode": mode,
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(latencies),
        "qps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "p99_ms": round(float(p99), 1),
        "errors": errors,
    }


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 300) -> dict:
    """Poll /healthz until the service answers (or fail if it exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the service exited with code {server.returncode}")
        try:
            return httpx.get(url + "/healthz", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit(f"the service did not answer /healthz in {timeout:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("runs/demo/index"))
    parser.add_argument("--data", type=Path, default=Path("data/demo"))
    parser.add_argument("--encoder", default="auto", choices=["auto", "onnx", "torch"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--modes", nargs="+", default=["dense"], choices=["dense", "lexical", "hybrid"])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/serve_load.jsonl"))
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    command = [
        sys.executable,
        "-m",
        "make_retrieval.cli",
        "serve",
        "--index",
        str(args.index),
        "--port",
        str(args.port),
        "--encoder",
        args.encoder,
    ]
    server = subprocess.Popen(command)
    try:
        health = wait_healthy(url, server)
        print(json.dumps(health), flush=True)
        queries = queries_of(args.data)
        for mode in args.modes:
            asyncio.run(load(url, queries, 4, 5, args.k, mode))  # warm-up: first calls allocate
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for clients in args.concurrency:
            for mode in args.modes:
                measured = asyncio.run(load(url, queries, clients, args.seconds, args.k, mode))
                row = {**measured, "encoder": health["encoder"]}
                print(json.dumps(row), flush=True)
                with args.out.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
