"""Browser-test fixtures: `moodboard serve` in a subprocess, a fixture-image server, headless Chromium.

The app under test is the real local stack (search API, evaluation routes and the frontend on one
port) with the tiny ONNX model and a generated catalog. Inspiration pictures come from a second
server on 127.0.0.1, which the app may fetch because MOODBOARD_FETCH_ALLOW_LOOPBACK is set (a
test-only switch). Chromium is Debian's, driven by Playwright through its executable path.
"""

from __future__ import annotations

import functools
import http.server
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from moodboard_local.demo_catalog import draw_mood_image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.browser.support import (
    ADMIN_TOKEN,
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PHONE,
    UI_TIMEOUT_MS,
)
from tests.loopback import base_url, loopback_server
from tests.serving import running_serve

expect.set_options(timeout=UI_TIMEOUT_MS)


SLOW_SECONDS = 6.0
# A catalog option of the app under test: a product type of the generated catalog not offered.
HIDDEN_CATEGORIES = ["sofa"]
BIG_PICTURE_BYTES = 20 * 1024 * 1024 + 4096


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files without a log line per request; /slow/<file> answers after SLOW_SECONDS;
    /big.jpg declares BIG_PICTURE_BYTES and sends none of them (the app refuses it on the header)."""

    def do_GET(self) -> None:
        if self.path == "/big.jpg":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(BIG_PICTURE_BYTES))
            self.end_headers()
            self.close_connection = True
            return
        if self.path.startswith("/slow/"):
            time.sleep(SLOW_SECONDS)
            self.path = self.path[len("/slow"):]
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Inspiration pictures on 127.0.0.1: mood.jpg, mood.png, wide.jpg, a pin-like page, a page
    without a picture (nopin.html), a non-image, a 20 MB "picture" (big.jpg, headers only) and anything
    under /slow/ after SLOW_SECONDS.

    Yields the base URL (no trailing slash).
    """
    root = tmp_path_factory.mktemp("inspiration")
    draw_mood_image("ocean", seed=3).save(root / "mood.jpg", quality=90)
    draw_mood_image("pastel", seed=5).save(root / "mood.png")
    draw_mood_image("earthy", seed=9).resize((480, 240)).save(root / "wide.jpg", quality=90)
    (root / "notes.txt").write_text("this is not a picture\n")
    (root / "nopin.html").write_text("<!doctype html><html><head><title>No picture here</title></head>"
                                     "<body>words only</body></html>")
    with loopback_server(functools.partial(_QuietHandler, directory=str(root))) as server:
        base = base_url(server)
        (root / "pin.html").write_text(
            "<!doctype html><html><head><title>A pin</title>"
            f'<meta property="og:image" content="{base}/mood.jpg"></head><body>pin</body></html>'
        )
        yield base


@pytest.fixture(scope="session")
def upload_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A picture on disk for the upload tests."""
    path = tmp_path_factory.mktemp("upload") / "my-moodboard.png"
    draw_mood_image("earthy", seed=7).save(path)
    return path


@pytest.fixture(scope="session")
def app_url(tiny_bundle: Path, demo_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`moodboard serve` on a free loopback port with the tiny model and the generated catalog."""
    work = tmp_path_factory.mktemp("serve")
    env = {
        "MOODBOARD_ADMIN_TOKEN": ADMIN_TOKEN,
        "MOODBOARD_FETCH_ALLOW_LOOPBACK": "true",
        "MOODBOARD_HIDDEN_CATEGORIES": json.dumps(HIDDEN_CATEGORIES),
        "MOODBOARD_CACHE_DIR": str(work / "cache"),
        "MOODBOARD_DATA_DIR": str(work / "data"),  # never the project's own .moodboard-data
        "XDG_CACHE_HOME": str(work / "xdg-cache"),
    }
    with running_serve(["--model", str(tiny_bundle), "--catalog", str(demo_catalog)], env=env, cwd=work,
                       log=work / "serve.log", drop=("MOODBOARD_",)) as served:
        yield served.url


@pytest.fixture
def api(app_url: str) -> Iterator[httpx.Client]:
    """An HTTP client for the app under test, authenticated as the local admin."""
    with httpx.Client(base_url=app_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium through Playwright (never a downloaded browser)."""
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `bash scripts/setup.sh --browser` "
                    "(or set MOODBOARD_CHROMIUM)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _open_page(browser: Browser, viewport: dict[str, int]) -> Iterator[Page]:
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh desktop-sized page (1280x800); uncaught script errors fail the test."""
    yield from _open_page(browser, DESKTOP)


@pytest.fixture
def phone_page(browser: Browser) -> Iterator[Page]:
    """A fresh phone-sized page (390x844); uncaught script errors fail the test."""
    yield from _open_page(browser, PHONE)


@pytest.fixture(params=[PHONE, DESKTOP], ids=["phone", "desktop"])
def any_page(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Page]:
    """The test runs twice: on a phone-sized page (390x844) and on a desktop-sized one (1280x800)."""
    yield from _open_page(browser, request.param)
