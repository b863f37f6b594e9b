"""The search Lambda (`search.app.handler`, Mangum) driven with API Gateway HTTP API v2 events,
against moto (S3 artifacts, DynamoDB history) with the fake embedder and a real index bundle.

No test reaches the network beyond 127.0.0.1: blocked addresses are checked through a stubbed
resolver with socket connections forbidden, and slow or endless upstreams are served locally.
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpcore
import pytest
from moodboard.artifacts import ArtifactStore
from moodboard.deps import get_history, get_image_fetcher
from moodboard.errors import StoreError
from moodboard.history import HistoryStore
from moodboard.ingest import load_catalog
from moodboard.runtime import Runtime, set_runtime
from moodboard.search_service import ImageFetcher
from moodboard.settings import Settings, get_settings
from moodboard_local.demo_catalog import draw_mood_image, generate_demo_catalog
from moodboard_local.local_stack import ensure_resources
from moto import mock_aws
from PIL import Image

from tests.apigw import LambdaContext, http_event, json_event, multipart, response_json
from tests.fakes import FakeEmbedder
from tests.loopback import QuietHandler, base_url, loopback_server

BUCKET = "moodboard-artifacts-test"
HOST = "https://abcdef1234.execute-api.us-east-1.amazonaws.com"
MAX_BODY = 256 * 1024
MAX_IMAGE = 64 * 1024


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


MOOD = jpeg(draw_mood_image("ocean", seed=3, size=96))


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A few hundred bytes of valid PNG whose header claims width x height pixels."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index bundle of a generated catalog (3 types x 5), embedded with the fake embedder."""
    root = tmp_path_factory.mktemp("search-api")
    catalog = generate_demo_catalog(root / "catalog", per_category=5, categories=["dress", "lamp", "shoes"])
    load_catalog(catalog, FakeEmbedder(), root / "index", settings=Settings(cache_dir=root / "cache"))
    return root / "index"


class StubResolver:
    """DNS answers from a table; records every lookup."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return self.answers[host]


@dataclass
class Stack:
    handler: Any
    app: Any
    settings: Settings
    s3: Any
    dynamodb: Any
    embedder: FakeEmbedder
    resolver: StubResolver

    def call(self, event: dict[str, Any]) -> tuple[int, Any, dict[str, Any]]:
        response = self.handler(event, LambdaContext())
        body = response_json(response) if "json" in response["headers"].get("content-type", "") else response
        return response["statusCode"], body, response

    def search(self, payload: dict[str, Any], **kwargs: Any) -> tuple[int, Any]:
        status, body, _ = self.call(json_event("/search", payload, **kwargs))
        return status, body

    def use(self, **changes: Any) -> None:
        """Change settings for the routes (and the fetcher, which is built from them)."""
        self.settings = self.settings.model_copy(update=changes)
        self.app.dependency_overrides[get_settings] = lambda: self.settings
        self.app.dependency_overrides[get_image_fetcher] = lambda: ImageFetcher.from_settings(
            self.settings, resolver=self.resolver)


@pytest.fixture(scope="module")
def module_stack(tmp_path_factory: pytest.TempPathFactory, bundle: Path) -> Iterator[Stack]:
    """moto with the bucket, tables and a published index, and the search app wired to them: built
    once per module (each test resets what it may change through the `stack` fixture)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
        with mock_aws():
            s3 = boto3.client("s3", region_name="us-east-1")
            dynamodb = boto3.client("dynamodb", region_name="us-east-1")
            settings = Settings(artifacts_bucket=BUCKET, cache_dir=tmp_path_factory.mktemp("cache"),
                                max_body_bytes=MAX_BODY, max_image_bytes=MAX_IMAGE, max_image_pixels=4_000_000,
                                fetch_timeout_seconds=1.0)
            ensure_resources(settings, s3, dynamodb)
            ArtifactStore(BUCKET, s3).publish(bundle)
            embedder = FakeEmbedder()
            set_runtime(Runtime(settings, s3=s3, dynamodb=dynamodb, embedder=embedder))
            from search.app import app, handler

            yield Stack(handler, app, settings, s3, dynamodb, embedder, StubResolver({
                "metadata.example": ["169.254.169.254"],
                "intranet.example": ["10.0.0.5"],
                "mixed.example": ["93.184.216.34", "192.168.1.20"],
                "ula.example": ["fd00::1"],
            }))
            app.dependency_overrides.clear()
            set_runtime(None)


@pytest.fixture
def stack(module_stack: Stack) -> Iterator[Stack]:
    base = module_stack.settings
    module_stack.embedder.image_calls = 0
    module_stack.resolver.calls.clear()
    module_stack.use()
    yield module_stack
    module_stack.app.dependency_overrides.clear()
    module_stack.settings = base


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail any outgoing connection the fetcher would make; returns the hosts it tried."""
    attempts: list[str] = []

    def refuse(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        attempts.append(host)
        raise AssertionError(f"a connection to {host}:{port} was attempted")

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", refuse)
    return attempts


# --- happy paths ---------------------------------------------------------------------------------

def test_health_returns_ok(stack: Stack) -> None:
    status, body, _ = stack.call(http_event("GET", "/health"))
    assert (status, body) == (200, {"status": "ok"})


def test_categories_lists_types_with_counts(stack: Stack) -> None:
    status, body, _ = stack.call(http_event("GET", "/categories"))
    assert status == 200
    assert body == {"categories": [{"name": "dress", "count": 5}, {"name": "lamp", "count": 5},
                                   {"name": "shoes", "count": 5}]}


def test_categories_leaves_out_the_hidden_ones_in_any_case(stack: Stack) -> None:
    stack.use(hidden_categories=["LAMP", "not sure"])

    status, body, _ = stack.call(http_event("GET", "/categories"))
    search_status, _ = stack.search({"text": "bright", "category": "lamp"})

    assert status == 200
    assert [category["name"] for category in body["categories"]] == ["dress", "shoes"]
    assert search_status == 200  # hidden from the list, still searchable by name


def test_version_reports_model_and_index(stack: Stack, bundle: Path) -> None:
    status, body, _ = stack.call(http_event("GET", "/version"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert status == 200
    assert body["model"] == {"fingerprint": "fake-embedder-0001", "source": None, "precision": "fp32", "tiny": False,
                             "description": None, "trained": False}
    assert body["index"]["version"] == manifest["version"]
    assert body["index"]["count"] == 15
    assert body["code_version"]


def test_search_base64_image_returns_results_and_writes_history(stack: Stack) -> None:
    status, body = stack.search({"image_base64": b64(MOOD), "category": "Dress", "k": 3})

    assert status == 200, body
    assert body["query"]["kind"] == "image"
    assert body["query"]["category"] == "dress"
    assert body["query"]["image_source"] == "base64"
    assert [r["category"] for r in body["results"]] == ["dress"] * 3
    assert body["results"][0]["image_url"].startswith(f"{HOST}/products/dress-")
    assert body["has_more"] is True
    assert body["model_fingerprint"] == "fake-embedder-0001" and body["tiny_model"] is False
    record = HistoryStore(stack.dynamodb, stack.settings.history_table).get(body["search_id"])
    assert record.result_ids == [r["id"] for r in body["results"]]
    assert record.kind == "image" and record.category == "dress"
    assert record.index_version == body["index_version"]
    assert record.params["weights"] == body["query"]["weights"]
    assert record.ttl > time.time() + 300 * 86400


def _halves(left: tuple[int, int, int], right: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (96, 64), left)
    image.paste(right, (48, 0, 96, 64))
    return jpeg(image)


def test_search_a_moodboard_of_three_pictures_blends_them_by_weight(stack: Stack) -> None:
    pictures = [jpeg(draw_mood_image(palette, seed=seed, size=64)) for palette, seed in
                (("ocean", 1), ("earthy", 2), ("neon", 3))]
    status, body = stack.search({"images": [{"base64": b64(pictures[0]), "weight": 2},
                                            {"base64": b64(pictures[1])},
                                            {"base64": b64(pictures[2]), "weight": 1}],
                                 "category": "dress", "k": 4})

    assert status == 200, body
    images = body["query"]["images"]
    assert [(image["source"], image["weight"], image["share"]) for image in images] == [
        ("base64", 2.0, 0.5), ("base64", 1.0, 0.25), ("base64", 1.0, 0.25)]
    assert body["query"]["kind"] == "image" and body["query"]["image_source"] == "base64"
    assert stack.embedder.image_calls == 3
    record = HistoryStore(stack.dynamodb, stack.settings.history_table).get(body["search_id"])
    assert [image["share"] for image in record.params["images"]] == [0.5, 0.25, 0.25]


def test_search_a_region_searches_only_that_part_of_the_picture(stack: Stack) -> None:
    blue = jpeg(Image.new("RGB", (48, 64), (20, 40, 200)))
    _, whole_blue = stack.search({"image_base64": b64(blue), "category": "lamp", "k": 5, "w_type": 0})
    status, right_half = stack.search({"images": [{"base64": b64(_halves((220, 30, 30), (20, 40, 200))),
                                                    "box": {"x": 0.5, "y": 0, "width": 0.5, "height": 1}}],
                                       "category": "lamp", "k": 5, "w_type": 0})
    _, whole = stack.search({"image_base64": b64(_halves((220, 30, 30), (20, 40, 200))), "category": "lamp",
                             "k": 5, "w_type": 0})

    assert status == 200, right_half
    assert right_half["query"]["images"][0]["box"] == {"x": 0.5, "y": 0.0, "width": 0.5, "height": 1.0}
    assert [r["id"] for r in right_half["results"]] == [r["id"] for r in whole_blue["results"]]
    assert [r["score"] for r in right_half["results"]] == pytest.approx([r["score"] for r in whole_blue["results"]],
                                                                        abs=0.02)
    assert [r["score"] for r in whole["results"]] != pytest.approx([r["score"] for r in whole_blue["results"]],
                                                                   abs=0.02)


def test_search_a_region_given_as_text_with_one_image(stack: Stack) -> None:
    status, body = stack.search({"image_base64": b64(MOOD), "box": "0.25,0.25,0.5,0.5", "category": "dress"})
    assert status == 200, body
    assert body["query"]["images"][0]["box"] == {"x": 0.25, "y": 0.25, "width": 0.5, "height": 0.5}


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ({"x": 1.5, "y": 0.2, "width": 0.2, "height": 0.2}, "the region of picture 2 starts outside it"),
        ({"x": 0.2, "y": 0.2, "width": 0, "height": 0.2}, "the region of picture 2 has no area"),
        ({"x": 0, "y": 0, "width": 1e9, "height": 1e9}, "the region of picture 2 is larger than the picture"),
    ],
    ids=["outside", "zero-area", "huge"],
)
def test_search_a_bad_region_is_422_before_anything_is_fetched(stack: Stack, no_sockets: list[str],
                                                               box: dict, message: str) -> None:
    status, body = stack.search({"images": [{"url": "http://metadata.example/a.jpg"},
                                            {"url": "http://metadata.example/b.jpg", "box": box}],
                                 "category": "dress"})

    assert status == 422
    assert body["error"] == "InvalidRegion" and body["detail"].startswith(message)
    assert stack.resolver.calls == [] and no_sockets == []


def test_search_a_region_of_a_few_pixels_is_422(stack: Stack) -> None:
    status, body = stack.search({"image_base64": b64(MOOD), "category": "dress",
                                 "box": {"x": 0.5, "y": 0.5, "width": 0.01, "height": 0.01}})
    assert status == 422 and body["error"] == "InvalidRegion"
    assert "draw a larger box" in body["detail"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"images": [{"base64": "AAAA"}], "image_url": "https://shop.example/a.jpg"}, "send the pictures either"),
        ({"images": [{"url": "https://shop.example/a.jpg", "base64": "AAAA"}]}, "the picture needs a url or base64"),
        ({"images": [{"weight": 2}, {"base64": "AAAA"}]}, "picture 1 needs a url or base64 bytes, and has neither"),
        ({"text": "red", "box": {"x": 0, "y": 0, "width": 1, "height": 1}}, "`box` is a region of the image"),
    ],
    ids=["images-and-image_url", "url-and-base64", "neither", "box-without-image"],
)
def test_search_pictures_given_wrongly_are_422(stack: Stack, payload: dict, message: str) -> None:
    status, body = stack.search({"category": "dress", **payload})
    assert status == 422 and body["error"] == "InvalidQuery"
    assert body["detail"].startswith(message)


def test_search_a_moodboard_of_seven_is_422(stack: Stack) -> None:
    status, body = stack.search({"images": [{"base64": b64(MOOD)}] * 7, "category": "dress"})
    assert status == 422 and body["detail"].startswith("images: List should have at most 6 items")


def test_search_less_like_a_product_leaves_it_out_and_says_so(stack: Stack) -> None:
    _, plain = stack.search({"image_base64": b64(MOOD), "category": "dress", "k": 5, "near_copy_threshold": 1})
    first = plain["results"][0]["id"]
    status, refined = stack.search({"image_base64": b64(MOOD), "category": "dress", "k": 5, "near_copy_threshold": 1,
                                    "less_like": [first], "w_neg": 0.5})

    assert status == 200, refined
    assert first not in [r["id"] for r in refined["results"]]
    assert refined["query"]["less_like"] == [{"product_id": first, "weight": 0.5}]
    assert refined["query"]["weights"]["w_neg"] == 0.5
    unknown_status, unknown = stack.search({"text": "x", "category": "dress", "less_like": ["no-such-product"]})
    assert unknown_status == 404 and unknown["error"] == "NotFound"


def test_search_pages_with_offset(stack: Stack) -> None:
    _, first = stack.search({"text": "calm blue", "category": "lamp", "k": 2})
    _, second = stack.search({"text": "calm blue", "category": "lamp", "k": 2, "offset": 2})
    _, last = stack.search({"text": "calm blue", "category": "lamp", "k": 2, "offset": 4})

    ids = [r["id"] for page in (first, second, last) for r in page["results"]]
    assert len(ids) == 5 and len(set(ids)) == 5
    assert (first["has_more"], second["has_more"], last["has_more"]) == (True, True, False)


def test_search_multipart_upload_returns_results(stack: Stack) -> None:
    body, ctype = multipart({"category": "shoes", "k": "4", "text": "sea"}, {"image": ("pin.jpg", MOOD, "image/jpeg")})

    status, result, _ = stack.call(http_event("POST", "/search", body=body, content_type=ctype))

    assert status == 200, result
    assert result["query"]["kind"] == "image+text"
    assert result["query"]["image_source"] == "upload"
    assert len(result["results"]) == 4 and {r["category"] for r in result["results"]} == {"shoes"}


def test_products_similar_and_image_routes(stack: Stack) -> None:
    status, product, _ = stack.call(http_event("GET", "/products/lamp-0001"))
    assert status == 200 and product["category"] == "lamp"

    status, similar, _ = stack.call(http_event("GET", "/products/lamp-0001/similar", query="k=3"))
    assert status == 200
    assert len(similar["results"]) == 3
    assert "lamp-0001" not in [r["id"] for r in similar["results"]]
    assert {r["category"] for r in similar["results"]} == {"lamp"}
    assert similar["product"] == product  # the anchor, shown with its results
    record = HistoryStore(stack.dynamodb, stack.settings.history_table).get(similar["search_id"])
    assert (record.kind, record.category, record.params["product_id"]) == ("similar", "lamp", "lamp-0001")
    assert record.result_ids == [r["id"] for r in similar["results"]]  # so they can be rated

    status, _, response = stack.call(http_event("GET", "/products/lamp-0001/image"))
    assert status == 200 and response["headers"]["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(base64.b64decode(response["body"]))).format == "JPEG"


def test_unknown_product_returns_404(stack: Stack) -> None:
    status, body, _ = stack.call(http_event("GET", "/products/nope"))
    assert status == 404 and body["error"] == "NotFound"


def test_openapi_docs_are_served(stack: Stack) -> None:
    status, _, response = stack.call(http_event("GET", "/docs"))
    assert status == 200 and "swagger" in response["body"].lower()
    assets = re.findall(r'(?:src|href)="([^"]+)"', response["body"])
    assert sorted(assets) == ["/docs-assets/favicon.png", "/docs-assets/swagger-ui-bundle.js",
                              "/docs-assets/swagger-ui.css"]  # local files, no CDN
    for asset in assets:
        asset_status, _, asset_response = stack.call(http_event("GET", asset))
        assert asset_status == 200 and asset_response["body"], asset
    _, spec, _ = stack.call(http_event("GET", "/openapi.json"))
    assert set(spec["paths"]["/search"]["post"]["requestBody"]["content"]) == {"application/json",
                                                                              "multipart/form-data"}


# --- bad input -----------------------------------------------------------------------------------

def test_search_unknown_category_returns_404_with_list_url(stack: Stack, no_sockets: list[str]) -> None:
    status, body = stack.search({"category": "spaceship", "image_url": "http://metadata.example/x.jpg"})

    assert status == 404
    assert body["error"] == "UnknownCategory"
    assert body["categories_url"] == f"{HOST}/categories"
    assert body["categories"] == ["dress", "lamp", "shoes"]
    assert body["detail"] == f"unknown category 'spaceship'; the list is at {HOST}/categories"
    assert stack.resolver.calls == [] and no_sockets == []


def test_search_without_query_returns_422(stack: Stack) -> None:
    status, body = stack.search({"k": 5})

    assert status == 422
    assert body["error"] == "InvalidQuery"
    assert body["detail"].startswith("nothing to search for")


def test_search_with_invalid_parameter_returns_422_naming_it(stack: Stack) -> None:
    status, body = stack.search({"text": "red", "k": 0})
    assert status == 422
    assert body["error"] == "RequestValidationError"
    assert body["detail"] == "k: Input should be greater than or equal to 1"


def test_search_with_two_images_returns_422(stack: Stack) -> None:
    status, body = stack.search({"image_base64": b64(MOOD), "image_url": "https://shop.example/a.jpg"})
    assert status == 422 and body["error"] == "InvalidQuery"


def test_search_non_image_returns_415(stack: Stack) -> None:
    status, body = stack.search({"image_base64": b64(b"<!doctype html><html>hello</html>")})
    assert status == 415
    assert body["error"] == "UnsupportedImage"

    upload, ctype = multipart({"category": "lamp"}, {"image": ("notes.txt", b"just some text", "text/plain")})
    status, body, _ = stack.call(http_event("POST", "/search", body=upload, content_type=ctype))
    assert status == 415 and body["error"] == "UnsupportedImage"
    assert stack.embedder.image_calls == 0


def test_search_unsupported_content_type_returns_415(stack: Stack) -> None:
    status, body, _ = stack.call(http_event("POST", "/search", body="image=x", content_type="text/plain"))
    assert status == 415 and body["error"] == "UnsupportedMediaType"


def test_search_body_over_limit_returns_413_before_parsing(stack: Stack) -> None:
    garbage = "x" * (MAX_BODY + 1)  # not JSON: parsing it would give 422

    status, body, _ = stack.call(http_event("POST", "/search", body=garbage))

    assert status == 413
    assert body["error"] == "RequestTooLarge" and body["max_bytes"] == MAX_BODY
    assert stack.embedder.image_calls == 0


def test_search_declared_body_over_limit_returns_413_without_reading(stack: Stack) -> None:
    status, body, _ = stack.call(json_event("/search", {"text": "x"}, declared_length=50 * 1024 * 1024))
    assert status == 413
    assert body["detail"] == f"the request body is {50 * 1024 * 1024} bytes; the limit is {MAX_BODY} bytes"
    assert (body["bytes"], body["max_bytes"]) == (50 * 1024 * 1024, MAX_BODY)  # what the page words its message from


def test_search_image_over_limit_returns_413_before_decoding(stack: Stack) -> None:
    not_an_image = b"\x00" * (MAX_IMAGE + 1024)  # decoding it would give 415

    status, body = stack.search({"image_base64": b64(not_an_image)})
    assert status == 413 and body["error"] == "ImageTooLarge"

    upload, ctype = multipart({}, {"image": ("big.jpg", not_an_image, "image/jpeg")})
    status, body, _ = stack.call(http_event("POST", "/search", body=upload, content_type=ctype))
    assert status == 413 and body["error"] == "ImageTooLarge"
    assert stack.embedder.image_calls == 0


def test_search_pixel_bomb_returns_413_without_decoding(stack: Stack) -> None:
    bomb = png_bomb()
    assert len(bomb) < 2000

    status, body = stack.search({"image_base64": b64(bomb), "category": "lamp"})

    assert status == 413
    assert body["error"] == "ImageTooLarge"
    assert stack.embedder.image_calls == 0


def test_search_corrupt_image_returns_422(stack: Stack) -> None:
    status, body = stack.search({"image_base64": b64(MOOD[: len(MOOD) // 3])})
    assert status == 422 and body["error"] == "CorruptImage"


def test_search_invalid_base64_returns_422(stack: Stack) -> None:
    status, body = stack.search({"image_base64": "not*base64*at*all"})
    assert status == 422 and body["detail"] == "image_base64 is not valid base64"


@pytest.mark.parametrize("url", [
    "file:///etc/passwd",
    "ftp://shop.example/pin.jpg",
    "gopher://shop.example/",
    "http://127.0.0.1:9/pin.jpg",
    "http://[::1]/pin.jpg",
    "http://10.0.0.5/pin.jpg",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/pin.jpg",
    "http://0.0.0.0/pin.jpg",
    "http://metadata.example/pin.jpg",
    "http://intranet.example/pin.jpg",
    "http://mixed.example/pin.jpg",
    "http://ula.example/pin.jpg",
    "http://user:secret@shop.example/pin.jpg",
])
def test_search_blocked_url_returns_400_without_connecting(stack: Stack, no_sockets: list[str], url: str) -> None:
    status, body = stack.search({"image_url": url, "category": "dress"})

    assert status == 400, body
    assert body["error"] == "BlockedURL"
    assert no_sockets == []


# --- slow, endless and redirecting upstreams on 127.0.0.1 ----------------------------------------

class Upstream(QuietHandler):
    """Fixture upstreams: an image, a page naming it, a slow one, an endless one, a bad redirect."""

    def do_GET(self) -> None:
        if self.path == "/pin.jpg":
            self._send(200, "image/jpeg", MOOD)
        elif self.path == "/pin.html":
            page = b'<html><head><meta property="og:image" content="/pin.jpg"></head></html>'
            self._send(200, "text/html; charset=utf-8", page)
        elif self.path == "/slow.jpg":
            time.sleep(3)
            self._send(200, "image/jpeg", MOOD)
        elif self.path == "/endless.jpg":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"\xff" * 16384)
            except OSError:
                return
        elif self.path == "/declared-huge.jpg":  # says it is over the limit; refused before reading
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(MAX_IMAGE * 2))
            self.end_headers()
        elif self.path == "/redirect-private":
            self.send_response(302)
            self.send_header("Location", "http://10.1.2.3/pin.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, "text/plain", b"no")

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass


@pytest.fixture
def upstream() -> Iterator[str]:
    with loopback_server(Upstream) as server:
        yield base_url(server)


def test_search_image_url_and_page_og_image(stack: Stack, upstream: str) -> None:
    stack.use(fetch_allow_loopback=True)

    status, direct = stack.search({"image_url": f"{upstream}/pin.jpg", "category": "dress", "k": 2})
    assert status == 200, direct
    status, via_page = stack.search({"image_url": f"{upstream}/pin.html", "category": "dress", "k": 2})
    assert status == 200, via_page

    assert via_page["query"]["resolved_image_url"] == f"{upstream}/pin.jpg"
    assert [r["id"] for r in via_page["results"]] == [r["id"] for r in direct["results"]]


def test_search_slow_upstream_returns_504(stack: Stack, upstream: str) -> None:
    stack.use(fetch_allow_loopback=True, fetch_timeout_seconds=0.5)
    started = time.monotonic()

    status, body = stack.search({"image_url": f"{upstream}/slow.jpg", "category": "dress"})

    assert status == 504 and body["error"] == "FetchTimeout"
    assert time.monotonic() - started < 2.5


def test_search_endless_upstream_returns_413(stack: Stack, upstream: str) -> None:
    stack.use(fetch_allow_loopback=True, fetch_timeout_seconds=5.0)

    status, body = stack.search({"image_url": f"{upstream}/endless.jpg", "category": "dress"})

    assert status == 413 and body["error"] == "FetchTooLarge"
    assert body["max_bytes"] == MAX_IMAGE and "bytes" not in body  # cut at the limit: its size is unknown


def test_search_upstream_declaring_too_many_bytes_returns_413_with_both_sizes(stack: Stack, upstream: str) -> None:
    stack.use(fetch_allow_loopback=True, fetch_timeout_seconds=5.0)

    status, body = stack.search({"image_url": f"{upstream}/declared-huge.jpg", "category": "dress"})

    assert (status, body["error"]) == (413, "FetchTooLarge")
    assert (body["bytes"], body["max_bytes"]) == (MAX_IMAGE * 2, MAX_IMAGE)


def test_search_redirect_to_private_address_returns_400(stack: Stack, upstream: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    stack.use(fetch_allow_loopback=True)
    dialled: list[str] = []
    original = httpcore.SyncBackend.connect_tcp

    def only_loopback(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        dialled.append(host)
        assert host == "127.0.0.1", f"dialled {host}"
        return original(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", only_loopback)

    status, body = stack.search({"image_url": f"{upstream}/redirect-private", "category": "dress"})

    assert status == 400 and body["error"] == "BlockedURL"
    assert set(dialled) == {"127.0.0.1"}


def test_search_url_loopback_is_blocked_unless_the_demo_switch_is_on(stack: Stack, upstream: str) -> None:
    status, body = stack.search({"image_url": f"{upstream}/pin.jpg", "category": "dress"})
    assert status == 400 and body["error"] == "BlockedURL"


# --- history, metrics, logs ----------------------------------------------------------------------

class BrokenHistory:
    def __init__(self) -> None:
        self.attempts = 0

    def put(self, record: Any) -> None:
        self.attempts += 1
        raise StoreError("DynamoDB failed to write search history (ProvisionedThroughputExceededException)")


def test_history_write_failure_does_not_fail_search(stack: Stack) -> None:
    broken = BrokenHistory()
    stack.app.dependency_overrides[get_history] = lambda: broken

    status, body = stack.search({"text": "sunset", "category": "shoes", "k": 2})

    assert status == 200
    assert len(body["results"]) == 2 and body["search_id"]
    assert broken.attempts == 1


def test_search_emits_metrics_and_logs_with_correlation_id_but_no_body(stack: Stack,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from moodboard.observability import lambda_logger

    event = json_event("/search", {"image_base64": b64(MOOD), "category": "lamp", "k": 2})
    request_id = event["requestContext"]["requestId"]
    logs = io.StringIO()
    handler = lambda_logger().logger_handler
    previous = handler.setStream(logs)
    try:
        status, _, _ = stack.call(event)
    finally:
        handler.setStream(previous)

    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert status == 200
    assert emf and emf[-1]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "moodboard"
    assert {"SearchLatency", "ResultCount"} <= set(emf[-1])
    assert emf[-1]["ResultCount"] == [2.0]
    records = [json.loads(line) for line in logs.getvalue().splitlines()]
    searches = [r for r in records if r["message"].startswith("search ")]
    assert searches and searches[-1]["correlation_id"] == request_id
    assert b64(MOOD)[:200] not in logs.getvalue()


# --- numbers beyond DynamoDB's range, deeply nested JSON (issue 11) ---------------------------------


def rate_through_the_evaluations_lambda(stack: Stack, search_id: str, product_id: str) -> tuple[int, Any]:
    """POST /evaluations through the evaluations Lambda's handler, against the same moto tables."""
    from evaluations import app as evaluations_app

    evaluations_app.app.dependency_overrides[get_settings] = lambda: stack.settings
    try:
        event = json_event("/evaluations", {"search_id": search_id, "product_id": product_id, "rating": 1,
                                            "rater": "tiny-weights"})
        response = evaluations_app.handler(event, LambdaContext())
    finally:
        evaluations_app.app.dependency_overrides.pop(get_settings, None)
    return response["statusCode"], response_json(response)


@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
@pytest.mark.parametrize("extreme", [
    {"mmr_lambda": 1e-300},
    {"w_text": 1e-200, "text": "sea"},
    {"w_type": 5e-324},
    {"near_copy_threshold": 1e-300},
], ids=lambda extreme: next(iter(extreme)))
def test_search_with_a_number_below_dynamodb_range_can_be_rated(stack: Stack, extreme: dict[str, Any]) -> None:
    status, body = stack.search({"image_base64": b64(MOOD), "category": "dress", "k": 3, **extreme})
    assert status == 200, body

    rated, answer = rate_through_the_evaluations_lambda(stack, body["search_id"], body["results"][0]["id"])

    assert rated == 200, answer
    assert answer["created"] is True and answer["evaluation"]["rank"] == 0
    record = HistoryStore(stack.dynamodb, stack.settings.history_table).get(body["search_id"])
    assert record.result_ids == [r["id"] for r in body["results"]]


DEEP = 5000


@pytest.mark.parametrize("raw", [
    "[" * DEEP + "]" * DEEP,
    '{"category": "dress", "text": ' + "[" * DEEP + "]" * DEEP + "}",
    '{"category": "dress", "x": ' + '{"a":' * DEEP + "1" + "}" * DEEP + "}",
    '{"text": "' + "[" * DEEP + '", "category": "dress", "k": 1, "w": ' + "[" * 40 + "]" * 40 + "}",
], ids=["body", "field", "unknown-field", "shallow-string-then-deep"])
def test_search_deeply_nested_json_returns_422(stack: Stack, raw: str) -> None:
    status, body, _ = stack.call(http_event("POST", "/search", body=raw))

    assert status == 422
    assert body == {"detail": "the JSON body nests arrays or objects more than 32 levels deep",
                    "error": "NestingTooDeep", "max_depth": 32}


def test_search_json_with_brackets_in_its_strings_is_not_refused(stack: Stack) -> None:
    status, body = stack.search({"text": "[" * 200 + "{" * 200, "category": "dress", "k": 1})

    assert status == 200, body
