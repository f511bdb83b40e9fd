"""The search service: FastAPI over an ``Index`` (query encoder + any vector store).

Endpoints are plain ``def`` functions, so FastAPI runs them in its thread pool: onnxruntime, torch and
FAISS release the GIL while they compute, and concurrent requests use every core. Every input a
client can send is validated by the request models (a 422 that says what is wrong); any other
failure is a logged 500, never a dead process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import anyio.to_thread
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from make_retrieval.files import inside
from make_retrieval.index.store import StoredProduct
from make_retrieval.retrieval import Index, SearchHit

log = logging.getLogger("make_retrieval.serve")

MAX_QUERY_CHARS = 256
MAX_K = 1000
MAX_BATCH = 64
#: Largest request body read (bytes); more is refused with 413 before it is parsed. The largest
#: valid request, a batch of 64 queries of 256 characters each written as JSON \uXXXX escapes
#: (6 bytes a character), is about 100 KB.
MAX_BODY_BYTES = 128 * 1024
#: At least one character that is not whitespace: a blank query has nothing to search for. ``\S``
#: alone means two things: the validator (pydantic's Rust regex, Unicode White_Space) counts U+0085
#: as whitespace and U+FEFF not, while readers of the OpenAPI spec (ECMA-262 regex, as JSON Schema
#: says) do the opposite; excluding both by name makes the service and its spec agree.
NOT_BLANK = "[^\\s\u0085\ufeff]"
#: Where FastAPI says an invalid input came from (the first element of an error's ``loc``).
REQUEST_PARTS = ("body", "query", "path", "header", "cookie")
PAGE = Path(__file__).with_name("page.html")
#: Latency buckets (seconds) for a service whose queries take milliseconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

QueryText = Annotated[
    StrictStr,
    Field(min_length=1, max_length=MAX_QUERY_CHARS, pattern=NOT_BLANK, description="What the shopper typed."),
]
K = Annotated[int, Field(ge=1, le=MAX_K, description="How many products to return.")]
SearchMode = Literal["dense", "lexical", "hybrid"]
ModeField = Annotated[
    SearchMode, Field(description="dense (MAKE), lexical (BM25) or hybrid (both fused, as the index chose).")
]
Category = Annotated[StrictStr | None, Field(max_length=MAX_QUERY_CHARS, description="Only this category.")]


class SearchRequest(BaseModel):
    """One query."""

    model_config = ConfigDict(extra="forbid")
    query: QueryText
    k: K = 10
    category: Category = None
    mode: ModeField = "dense"


class BatchRequest(BaseModel):
    """Several queries answered with one encoder pass and one index search."""

    model_config = ConfigDict(extra="forbid")
    queries: Annotated[list[QueryText], Field(min_length=1, max_length=MAX_BATCH)]
    k: K = 10
    category: Category = None
    mode: ModeField = "dense"


class Product(BaseModel):
    """A product as stored, with its Modal Adaptation weights b(p) and image address."""

    product_id: str
    title: str
    category: str | None
    weights: dict[str, float]
    metadata: dict[str, Any]
    image_url: str | None


class Result(Product):
    """A product found for a query: its score (the inner product of the two vectors; BM25 in
    lexical mode; the fused score in hybrid mode) and the channels that found it with its rank in
    each, e.g. ``{"dense": 3, "lexical": 1}``."""

    score: float
    channels: dict[str, int]


class SearchResponse(BaseModel):
    """Results of one query; ``query_weights`` are the query's modality weights a(q) (empty in
    lexical mode, which runs no model)."""

    query: str
    mode: SearchMode
    query_weights: dict[str, float]
    results: list[Result]


class BatchResponse(BaseModel):
    """One ``SearchResponse`` per query, in request order."""

    responses: list[SearchResponse]


class NotFound(BaseModel):
    """What a 404 says."""

    detail: str


class TooLarge(BaseModel):
    """What a 413 says."""

    message: str


#: The 413 of the endpoints that read a body, in the OpenAPI spec.
TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {"model": TooLarge, "description": f"Request body over {MAX_BODY_BYTES} bytes."}
}
#: The 404 of the catalog endpoints, in the OpenAPI spec.
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": NotFound, "description": "No such product or image."}}


class Health(BaseModel):
    """Liveness and what is being served."""

    status: str
    products: int
    backend: str
    encoder: str
    #: The search modes this index answers (lexical and hybrid need its lexical channel).
    modes: list[SearchMode]
    #: How hybrid mode fuses the channels (None without a lexical channel).
    fusion: str | None


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 and is not read further,
    whether it declares its length (Content-Length) or streams in chunks. A body within the limit
    is buffered (it is small) and handed on unchanged."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nobody to answer
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"message": f"request body over {self.limit} bytes"}, status_code=413)
        await response(scope, receive, send)


def _product(stored: StoredProduct | SearchHit) -> dict[str, Any]:
    """The API's fields of a stored product or a hit: the image as the service's address."""
    fields = stored.to_dict()
    image = fields.pop("image")
    fields["image_url"] = f"/images/{quote(stored.product_id, safe='')}" if image else None
    return fields


def create_app(index: Index, images_root: Path | None, threads: int | None = None) -> FastAPI:
    """The service for ``index``; product images are served from inside ``images_root`` only.
    ``threads`` caps the requests computing at once (FastAPI's thread pool, 40 by default): on a
    loaded machine more would only share the same cores, and each would take longer."""
    store = index.store
    root = images_root.resolve() if images_root is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if threads is not None:
            anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="MAKE product search",
        summary="Text-to-multimodal product retrieval (MAKE: Modal Adaptation and Keyword Enhancement).",
        version="0.1.0",
    )
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    registry = CollectorRegistry()  # one per app: tests build many apps in one process
    requests = Counter("make_requests", "HTTP requests", ["route", "method", "status"], registry=registry)
    latency = Histogram("make_request_seconds", "Request latency", ["route"], buckets=BUCKETS, registry=registry)

    @app.middleware("http")
    async def measure(request: Request, call_next: Any) -> Response:
        started, status = time.perf_counter(), 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")  # the route template: bounded label values
            requests.labels(path, request.method, str(status)).inc()
            latency.labels(path).observe(time.perf_counter() - started)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        """422 with FastAPI's error list plus one readable line ('query: must not be blank')."""
        problems = []
        for item in error.errors():
            loc = list(item["loc"])
            where = ".".join(str(part) for part in (loc[1:] if loc and loc[0] in REQUEST_PARTS else loc))
            text = "must not be blank" if item["type"] == "string_pattern_mismatch" else item["msg"]
            problems.append(f"{where or 'request'}: {text}")
        detail = [{k: v for k, v in item.items() if k in ("type", "loc", "msg")} for item in error.errors()]
        return JSONResponse({"message": "; ".join(problems), "detail": detail}, status_code=422)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        log.exception("request %s %s failed", request.method, request.url.path)
        return JSONResponse({"message": "internal error; the server log has the details"}, status_code=500)

    modes: list[SearchMode] = ["dense", "lexical", "hybrid"] if index.lexical is not None else ["dense"]

    def answer(queries: list[str], k: int, category: str | None, mode: SearchMode) -> list[SearchResponse]:
        if mode not in modes:
            raise HTTPException(422, f"mode '{mode}' needs a lexical channel, which this index has not; embed it again")
        return [
            SearchResponse(
                query=result.query,
                mode=mode,
                query_weights=result.weights,
                results=[Result(**_product(hit)) for hit in result.hits],
            )
            for result in index.search(queries, k, category, mode)
        ]

    @app.get("/search", response_model=SearchResponse, tags=["search"])
    def search_get(
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, pattern=NOT_BLANK)],
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
        category: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS)] = None,
        mode: SearchMode = "dense",
    ) -> SearchResponse:
        """Top-k products for query ``q``."""
        return answer([q], k, category, mode)[0]

    @app.post("/search", response_model=SearchResponse, tags=["search"], responses=TOO_LARGE)
    def search_post(request: SearchRequest) -> SearchResponse:
        """Top-k products for one query."""
        return answer([request.query], request.k, request.category, request.mode)[0]

    @app.post("/search/batch", response_model=BatchResponse, tags=["search"], responses=TOO_LARGE)
    def search_batch(request: BatchRequest) -> BatchResponse:
        """Top-k products for each of up to 64 queries."""
        return BatchResponse(responses=answer(request.queries, request.k, request.category, request.mode))

    def stored(product_id: str) -> StoredProduct:
        product = store.get([product_id])[0]
        if product is None:
            raise HTTPException(404, f"no product '{product_id}'")
        return product

    @app.get("/products/{product_id:path}", response_model=Product, tags=["catalog"], responses=NOT_FOUND)
    def product(product_id: str) -> Product:
        """One product's stored fields and modality weights."""
        return Product(**_product(stored(product_id)))

    @app.get(
        "/images/{product_id:path}",
        tags=["catalog"],
        response_class=FileResponse,
        responses={**NOT_FOUND, 200: {"content": {"image/*": {}}, "description": "The image file."}},
    )
    def image(product_id: str) -> FileResponse:
        """The product's image file from the catalog folder (never a file outside it)."""
        relative = stored(product_id).image
        if relative is None or root is None:
            raise HTTPException(404, f"product '{product_id}' has no image")
        path = inside(root, relative)  # links the catalog holds are read through; '..' never leaves it
        if path is None or not path.is_file():
            raise HTTPException(404, f"the image of product '{product_id}' is not in the catalog folder")
        return FileResponse(path)

    @app.get("/categories", tags=["catalog"])
    def categories() -> list[str]:
        """Categories to filter on."""
        return store.categories()

    @app.get("/healthz", response_model=Health, tags=["service"])
    def healthz() -> Health:
        """Liveness: the store answers and how many products it holds."""
        backend = store.manifest.get("backend", "faiss")
        fusion = index.fusion.describe() if index.lexical is not None else None
        encoder = index.retriever.encoder.name
        return Health(status="ok", products=len(store), backend=backend, encoder=encoder, modes=modes, fusion=fusion)

    @app.get("/metrics", tags=["service"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics: requests by route and status, latency histogram by route."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        """The search page."""
        return HTMLResponse(PAGE.read_text())

    return app
