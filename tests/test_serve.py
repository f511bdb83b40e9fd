"""The search service through FastAPI's test client: every endpoint, every kind of bad input, and a
schemathesis run over the OpenAPI spec that must never see a 5xx."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from make_retrieval.index.store import StoredProduct, read_manifest
from make_retrieval.retrieval import Index, open_index
from make_retrieval.serve.app import MAX_BATCH, MAX_BODY_BYTES, MAX_QUERY_CHARS, create_app


@pytest.fixture(scope="module")
def app(served_index: Path) -> FastAPI:
    data = Path(read_manifest(served_index)["data"])
    return create_app(Index.open(served_index, encoder="auto"), data)


@pytest.fixture(scope="module")
def client(app: FastAPI) -> TestClient:
    return TestClient(app)


def test_search_get_post_and_batch_agree(client: TestClient) -> None:
    got = client.get("/search", params={"q": "red heels", "k": 5})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["query"] == "red heels" and len(body["results"]) == 5
    assert sum(body["query_weights"].values()) == pytest.approx(1.0, abs=1e-3)
    first = body["results"][0]
    assert set(first) == {"product_id", "title", "category", "weights", "metadata", "image_url", "score", "channels"}
    assert [r["channels"] for r in body["results"]] == [{"dense": rank} for rank in range(1, 6)]
    assert body["mode"] == "dense"
    assert set(first["weights"]) == {"title", "image", "fused"}
    assert sum(first["weights"].values()) == pytest.approx(1.0, abs=1e-3)
    assert first["image_url"] == f"/images/{first['product_id']}" and "base_colour" in first["metadata"]
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    posted = client.post("/search", json={"query": "red heels", "k": 5}).json()
    assert posted == body
    batch = client.post("/search/batch", json={"queries": ["red heels", "blue watch"], "k": 5})
    assert batch.status_code == 200
    responses = batch.json()["responses"]
    assert [r["query"] for r in responses] == ["red heels", "blue watch"]
    assert [r["product_id"] for r in responses[0]["results"]] == [r["product_id"] for r in body["results"]]


def test_each_mode_says_which_channel_found_each_hit(client: TestClient) -> None:
    """Lexical: BM25 order, no query weights; hybrid: the fused list, each hit tagged with the
    channels that proposed it; GET, POST and batch agree in every mode."""
    lexical = client.get("/search", params={"q": "brand1 watch", "k": 4, "mode": "lexical"}).json()
    assert lexical["mode"] == "lexical" and lexical["query_weights"] == {}
    assert [r["channels"] for r in lexical["results"]] == [{"lexical": rank} for rank in range(1, 5)]
    assert all({"brand1", "watch"} <= set(r["title"].lower().split()) for r in lexical["results"])
    hybrid = client.get("/search", params={"q": "brand1 watch", "k": 10, "mode": "hybrid"}).json()
    assert set(hybrid["query_weights"]) == {"title", "image", "fused"}
    assert all(r["channels"] and set(r["channels"]) <= {"dense", "lexical"} for r in hybrid["results"])
    assert any(len(r["channels"]) == 2 for r in hybrid["results"]), "the channels overlap on a 32-product catalog"
    posted = client.post("/search", json={"query": "brand1 watch", "k": 10, "mode": "hybrid"}).json()
    batch = client.post("/search/batch", json={"queries": ["brand1 watch"], "k": 10, "mode": "hybrid"}).json()
    assert posted == hybrid == batch["responses"][0]
    bad = client.get("/search", params={"q": "watch", "mode": "sparse"})
    assert bad.status_code == 422 and "mode" in bad.json()["message"]


def test_an_index_without_a_lexical_channel_refuses_lexical_modes(served_index: Path, tmp_path: Path) -> None:
    copy = tmp_path / "index"
    shutil.copytree(served_index, copy)
    shutil.rmtree(copy / "lexical")
    client = TestClient(create_app(Index.open(copy), None))
    assert client.get("/healthz").json()["modes"] == ["dense"]
    refused = client.get("/search", params={"q": "watch", "mode": "hybrid"})
    assert refused.status_code == 422 and "lexical channel" in refused.json()["detail"]
    assert client.get("/search", params={"q": "watch"}).status_code == 200


def test_category_filter_and_categories(client: TestClient) -> None:
    assert client.get("/categories").json() == ["handbag", "heels", "shirt", "watch"]
    body = client.post("/search", json={"query": "red", "k": 100, "category": "watch"}).json()
    assert len(body["results"]) == 8 and {r["category"] for r in body["results"]} == {"watch"}
    assert client.get("/search", params={"q": "red", "category": "no such"}).json()["results"] == []


def test_products_and_images(client: TestClient, served_index: Path) -> None:
    product = client.get("/products/p010")
    assert product.status_code == 200
    assert product.json()["title"] == "Brand0 red heels classic" and product.json()["category"] == "heels"
    assert client.get("/products/nope").status_code == 404
    assert client.get("/products/nope").json()["detail"] == "no product 'nope'"
    image = client.get("/images/p010")
    data = Path(read_manifest(served_index)["data"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content == (data / "images" / "p010.jpg").read_bytes()
    for path in ("/images/nope", "/images/..%2F..%2Fmanifest.json", "/images/../products.parquet"):
        assert client.get(path).status_code == 404, path


def test_an_image_path_leaving_the_catalog_is_never_served(served_index: Path, tmp_path: Path) -> None:
    """Even an index whose table points outside the catalog folder (tampered, or built elsewhere)."""
    retriever = open_index(served_index, encoder="auto")
    data = Path(read_manifest(served_index)["data"])
    secret = data.parent / "secret.txt"
    secret.write_text("do not serve")
    weights = {"title": 0.5, "image": 0.25, "fused": 0.25}
    escaping = StoredProduct("evil", "evil", None, "../secret.txt", weights, {})
    retriever.store.add([escaping, StoredProduct("none", "no image", None, None, weights, {})], np.zeros((2, 24)))
    client = TestClient(create_app(Index(retriever), data))
    assert client.get("/products/evil").json()["image_url"] == "/images/evil"
    assert client.get("/images/evil").status_code == 404
    assert client.get("/images/none").json()["detail"] == "product 'none' has no image"


def test_an_image_linked_from_inside_the_catalog_is_served(served_index: Path, tmp_path: Path) -> None:
    """A link the catalog's owner made inside its folder (images on another disk) is read through."""
    retriever = open_index(served_index, encoder="auto")
    data = Path(read_manifest(served_index)["data"])
    outside = tmp_path / "other-disk.jpg"
    outside.write_bytes((data / "images" / "p000.jpg").read_bytes())
    (data / "images" / "linked.jpg").symlink_to(outside)
    weights = {"title": 0.5, "image": 0.25, "fused": 0.25}
    retriever.store.add([StoredProduct("linked", "linked", None, "images/linked.jpg", weights, {})], np.zeros((1, 24)))
    response = TestClient(create_app(Index(retriever), data)).get("/images/linked")
    assert response.status_code == 200 and response.content == outside.read_bytes()


@pytest.mark.parametrize(
    ("method", "path", "payload", "message"),
    [
        ("get", "/search", {"q": ""}, "q: String should have at least 1 character"),
        ("get", "/search", {"q": "   "}, "q: must not be blank"),
        ("get", "/search", {"q": "x" * 257}, "q: String should have at most 256 characters"),
        ("get", "/search", {}, "q: Field required"),
        ("get", "/search", {"q": "red", "k": 0}, "k: Input should be greater than or equal to 1"),
        ("get", "/search", {"q": "red", "k": 1001}, "k: Input should be less than or equal to 1000"),
        ("get", "/search", {"q": "red", "k": "ten"}, "k: Input should be a valid integer"),
        ("post", "/search", {"query": 5}, "query: Input should be a valid string"),
        ("post", "/search", {"query": ["red"]}, "query: Input should be a valid string"),
        ("post", "/search", {"query": None}, "query: Input should be a valid string"),
        ("post", "/search", {"query": "\t\n "}, "query: must not be blank"),
        ("post", "/search", {"query": "\u0085"}, "query: must not be blank"),  # whitespace to Unicode only
        ("post", "/search", {"query": "\ufeff "}, "query: must not be blank"),  # whitespace to ECMA-262 only
        ("post", "/search", {"query": "red", "colour": "x"}, "colour: Extra inputs are not permitted"),
        ("post", "/search", {"query": "red", "category": "c" * 300}, "category: String should have at most 256"),
        ("post", "/search/batch", {"queries": []}, "queries: List should have at least 1 item"),
        ("post", "/search/batch", {"queries": ["red"] * 65}, "queries: List should have at most 64 items"),
        ("post", "/search/batch", {"queries": ["red", ""]}, "queries.1: String should have at least 1 character"),
    ],
)
def test_bad_input_is_a_422_that_says_what_is_wrong(
    client: TestClient, method: str, path: str, payload: dict, message: str
) -> None:
    response = client.get(path, params=payload) if method == "get" else client.post(path, json=payload)
    assert response.status_code == 422, response.text
    assert message in response.json()["message"]


def test_a_body_that_is_not_json_is_a_4xx(client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    response = client.post("/search", content=b"{not json", headers=headers)
    assert response.status_code == 422 and "JSON decode error" in response.json()["message"]
    response = client.post("/search", content=b"\xff\xfe not utf-8", headers=headers)
    assert response.status_code in (400, 422)  # Starlette's answer depends on how the bytes fail to decode


def test_an_oversized_body_is_a_413_declared_or_streamed(client: TestClient) -> None:
    """The largest valid batch (64 queries of 256 characters, JSON-escaped) is read; more is refused
    before it is parsed, whether the client sends Content-Length or streams chunks."""
    largest = json.dumps({"queries": ["\u00e9" * MAX_QUERY_CHARS] * MAX_BATCH, "k": 1}).encode()
    assert len(largest) < MAX_BODY_BYTES
    response = client.post("/search/batch", content=largest, headers={"content-type": "application/json"})
    assert response.status_code == 200 and len(response.json()["responses"]) == MAX_BATCH
    too_big = json.dumps({"query": "shirt", "pad": "x" * MAX_BODY_BYTES}).encode()
    response = client.post("/search", content=too_big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and str(MAX_BODY_BYTES) in response.json()["message"]

    def chunks() -> Iterator[bytes]:
        yield b'{"query": "shirt", "pad": "'
        for _ in range(MAX_BODY_BYTES // 1000 + 1):
            yield b"x" * 1000
        yield b'"}'

    response = client.post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert client.post("/search", json={"query": "shirt"}).status_code == 200, "a small body is passed on intact"


def test_health_metrics_page_and_spec(client: TestClient) -> None:
    client.get("/search", params={"q": "blue shirt"})
    client.get("/search", params={"q": ""})
    health = client.get("/healthz").json()
    assert health.pop("fusion").startswith(("dense + ", "reciprocal rank fusion"))
    assert health == {
        "status": "ok",
        "products": 32,
        "backend": "faiss",
        "encoder": "onnx",
        "modes": ["dense", "lexical", "hybrid"],
    }
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'make_requests_total{method="GET",route="/search",status="200"}' in text
    assert 'make_requests_total{method="GET",route="/search",status="422"}' in text
    assert 'make_request_seconds_bucket{le="0.005",route="/search"}' in text
    page = client.get("/")
    assert page.status_code == 200 and '<input id="q" type="search"' in page.text
    spec = client.get("/openapi.json").json()
    assert {"/search", "/search/batch", "/products/{product_id}", "/images/{product_id}", "/healthz"} <= set(
        spec["paths"]
    )


def test_no_input_from_the_spec_gets_a_5xx(app: FastAPI) -> None:
    """Generated requests, valid and not, against every operation of the OpenAPI spec: no 5xx, and
    every response matches the spec. (The schemathesis pytest plugin does not load under pytest 9,
    so its strategies are driven by hypothesis here.)"""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 8

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate()

        check()


def test_the_serve_command_starts_the_service(served_index: Path) -> None:
    """``make-retrieval serve`` itself (uvicorn, thread settings, encoder choice), as users start it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "make_retrieval.cli", "serve", "--index", str(served_index), "--port", str(port)]
    server = subprocess.Popen([*command, "--threads", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "serve did not answer in 120 s"
                time.sleep(0.2)
        assert {k: health[k] for k in ("status", "products", "backend", "encoder", "modes")} == {
            "status": "ok",
            "products": 32,
            "backend": "faiss",
            "encoder": "onnx",
            "modes": ["dense", "lexical", "hybrid"],
        }
        found = httpx.get(f"http://127.0.0.1:{port}/search", params={"q": "red heels", "k": 3}).json()
        assert len(found["results"]) == 3
    finally:
        server.terminate()
        server.wait(timeout=30)
