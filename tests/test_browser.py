"""The search page in real headless Chromium (Debian's, driven by Playwright): type a query, see product
images with their modality bars. The screenshot is left in ``test-output/``.

Skipped where no Chromium is installed, unless MAKE_REQUIRE_BROWSER is set (``.ci/run`` installs
Chromium and sets it, so CI cannot skip it silently).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from make_retrieval.index.store import read_manifest
from make_retrieval.retrieval import Index
from make_retrieval.serve.app import create_app

#: Trains models, loads real weights or starts processes: deselect with -m 'not slow' for a quick run.
pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
#: Flags for a closed network and a root user (what Debian's Chromium needs in a container).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if CHROMIUM is None and not os.environ.get("MAKE_REQUIRE_BROWSER"):
    pytest.skip("no chromium on PATH (apt-get install chromium); CI sets MAKE_REQUIRE_BROWSER", allow_module_level=True)


@pytest.fixture(scope="module")
def server(served_index: Path) -> Iterator[str]:
    """The service on a free loopback port, in a thread of this process."""
    data = Path(read_manifest(served_index)["data"])
    app = create_app(Index.open(served_index, encoder="auto"), data)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the service did not start in 30 s"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_typing_a_query_shows_product_images(server: str) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None, "MAKE_REQUIRE_BROWSER is set but chromium is not installed"
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(server + "/")
        page.fill("#q", "red heels")
        page.press("#q", "Enter")
        page.wait_for_selector("article.card img")
        page.wait_for_function(
            "[...document.querySelectorAll('article.card img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        cards = page.locator("article.card")
        assert cards.count() == 20  # k defaults to 20 on the page
        first = cards.first
        assert first.locator("img").get_attribute("src").startswith("/images/")
        assert first.locator(".title").inner_text().strip() != ""
        bar = first.locator(".bar div")
        assert [bar.nth(i).get_attribute("data-modality") for i in range(bar.count())] == ["title", "image", "fused"]
        assert "products for “red heels” (dense)" in page.inner_text("#status")
        assert first.locator(".channels span").all_inner_texts() == ["dense #1"]
        page.select_option("#mode", "hybrid")
        page.fill("#q", "brand1 heels")
        page.press("#q", "Enter")
        page.wait_for_function("document.querySelector('#status').innerText.includes('(hybrid)')")
        tags = page.locator("article.card .channels span").all_inner_texts()
        assert any(t.startswith("lexical #") for t in tags) and any(t.startswith("dense #") for t in tags)
        assert page.locator("article.card .channels span.lexical").count() >= 4  # the four Brand1 heels
        page.select_option("#category", "watch")
        page.press("#q", "Enter")
        page.wait_for_function("document.querySelectorAll('article.card').length === 8")
        categories = page.locator("article.card .meta span:first-child").all_inner_texts()
        assert set(categories) == {"watch"}
        page.screenshot(path=str(OUTPUT / "browser-search.png"), full_page=True)
        browser.close()
    assert (OUTPUT / "browser-search.png").stat().st_size > 10_000
