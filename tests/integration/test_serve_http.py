"""`moodboard serve` over real HTTP on 127.0.0.1: the real CLI in a subprocess with the tiny ONNX
model, a generated catalog and the embedded moto server; search, rate, load a new catalog."""

from __future__ import annotations

import base64
import io
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
from moodboard_local.demo_catalog import draw_mood_image, generate_demo_catalog

from tests.loopback import QuietHandler, base_url, loopback_server
from tests.serving import REPO, ServeProcess, running_serve

TOKEN = "serve-test-admin-token"
START_TIMEOUT = 240.0

pytestmark = pytest.mark.slow


def mood_jpeg(palette: str = "ocean") -> bytes:
    buffer = io.BytesIO()
    draw_mood_image(palette, seed=7, size=128).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@dataclass
class Server:
    url: str
    moto_endpoint: str
    serve: ServeProcess

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60.0, **kwargs)

    def log(self) -> str:
        return self.serve.log_text()


@pytest.fixture(scope="module")
def server(tiny_bundle: Path, demo_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serve")
    env = {
        "XDG_CACHE_HOME": str(root / "xdg"),
        "MOODBOARD_CACHE_DIR": str(root / "cache"),
        "MOODBOARD_DATA_DIR": str(root / "data"),  # never the project's own .moodboard-data
        "MOODBOARD_ADMIN_TOKEN": TOKEN,
        "MOODBOARD_INDEX_REFRESH_SECONDS": "1",
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-credentials"),
        "COLUMNS": "400",
    }
    args = ["--model", str(tiny_bundle), "--catalog", str(demo_catalog), "--aws", "moto", "--allow-loopback-fetch"]
    with running_serve(args, env=env, cwd=REPO, log=root / "serve.log", drop=("AWS_", "MOODBOARD_", "POWERTOOLS_"),
                       start_seconds=START_TIMEOUT) as serve:
        yield Server(f"{serve.url}/", serve.moto_endpoint, serve)


class Fixtures(QuietHandler):
    def do_GET(self) -> None:
        body = mood_jpeg("neon")
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def fixture_images() -> Iterator[str]:
    with loopback_server(Fixtures) as server:
        yield base_url(server)


def test_serve_says_tiny_model_on_console_page_and_version(server: Server) -> None:
    with server.client() as client:
        config = client.get("/config.json").json()
        version = client.get("/version").json()
        page = client.get("/")
    assert config == {"apiBase": "", "tinyModel": True, "adminRequired": True}
    assert version["model"]["tiny"] is True
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert "TINY RANDOM test model" in server.log()


def test_serve_search_over_http_returns_results(server: Server) -> None:
    # The tiny random model maps every picture close to every other: keep near-copies in.
    payload = {"image_base64": base64.b64encode(mood_jpeg()).decode(), "category": "dress", "k": 5,
               "near_copy_threshold": 1.0}
    with server.client() as client:
        categories = client.get("/categories").json()["categories"]
        response = client.post("/search", json=payload)

    assert {c["name"] for c in categories} == {"dress", "shoes", "lamp", "bag", "hat", "sofa"}
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["results"]) == 5
    assert {r["category"] for r in body["results"]} == {"dress"}
    assert body["tiny_model"] is True
    with server.client() as client:
        image = client.get(body["results"][0]["image_url"].removeprefix(server.url.rstrip("/")))
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"


def test_serve_multipart_and_loopback_url_searches(server: Server, fixture_images: str) -> None:
    with server.client() as client:
        upload = client.post("/search", data={"category": "lamp", "k": "3", "near_copy_threshold": "1"},
                             files={"image": ("pin.jpg", mood_jpeg("earthy"), "image/jpeg")})
        by_url = client.post("/search", json={"image_url": f"{fixture_images}/pin.jpg", "category": "hat"})

    assert upload.status_code == 200, upload.text
    assert [r["category"] for r in upload.json()["results"]] == ["lamp"] * 3
    assert by_url.status_code == 200, by_url.text
    assert by_url.json()["query"]["resolved_image_url"] == f"{fixture_images}/pin.jpg"


def test_serve_rating_posted_twice_is_stored_once(server: Server) -> None:
    admin = {"Authorization": f"Bearer {TOKEN}"}
    with server.client() as client:
        search = client.post("/search", json={"text": "pastel", "category": "bag", "k": 4}).json()
        rating = {"search_id": search["search_id"], "product_id": search["results"][1]["id"], "rating": 1,
                  "rater": "integration-test"}
        first = client.post("/evaluations", json=rating)
        second = client.post("/evaluations", json={**rating, "rating": -1, "comment": "changed my mind"})
        unauthorized = client.get("/evaluations")
        listing = client.get("/evaluations", headers=admin, params={"index_version": search["index_version"]})
        stranger = client.post("/evaluations", json={**rating, "product_id": "not-in-results"})

    assert first.status_code == 200 and first.json()["created"] is True
    assert second.status_code == 200 and second.json()["created"] is False
    assert unauthorized.status_code == 401
    assert listing.status_code == 200
    mine = [item for item in listing.json()["items"] if item["search_id"] == search["search_id"]]
    assert len(mine) == 1
    assert mine[0]["rating"] == -1 and mine[0]["product_id"] == rating["product_id"]
    assert stranger.status_code == 409


def test_serve_bad_inputs_over_http(server: Server) -> None:
    with server.client() as client:
        unknown = client.post("/search", json={"category": "spaceship", "text": "x"})
        empty = client.post("/search", json={})
        # 0.0.0.0 ("this host", never loopback to the guard): blocked even with --allow-loopback-fetch, and a
        # broken guard would still only dial this machine (tests never name a private or public address).
        blocked = client.post("/search", json={"image_url": "http://0.0.0.0:9/latest/", "category": "dress"})
    assert unknown.status_code == 404 and unknown.json()["categories_url"] == f"{server.url}categories"
    assert empty.status_code == 422
    assert blocked.status_code == 400 and blocked.json()["error"] == "BlockedURL"


def test_serve_search_with_a_weight_below_dynamodb_range_can_be_rated(server: Server) -> None:
    """A legal weight DynamoDB cannot hold (1e-300) still leaves a history record to rate against."""
    with server.client() as client:
        searches = [client.post("/search", json={"text": "pastel", "category": "bag", "k": 2, **extreme})
                    for extreme in ({"mmr_lambda": 1e-300}, {"w_text": 1e-200})]
        ratings = [client.post("/evaluations", json={"search_id": s.json()["search_id"], "rating": 1,
                                                     "product_id": s.json()["results"][0]["id"], "rater": "tiny"})
                   for s in searches]

    assert [s.status_code for s in searches] == [200, 200], [s.text for s in searches]
    assert [r.status_code for r in ratings] == [200, 200], [r.text for r in ratings]
    assert all(r.json()["created"] for r in ratings)


def test_serve_concurrent_identical_ratings_create_once(server: Server) -> None:
    """16 shoppers' browsers posting the same rating at once: one creates it, 15 revise it."""
    from concurrent.futures import ThreadPoolExecutor

    with server.client() as client:
        search = client.post("/search", json={"text": "sunset", "category": "bag", "k": 3}).json()
    rating = {"search_id": search["search_id"], "product_id": search["results"][0]["id"], "rating": 1,
              "rater": "sixteen-tabs"}
    barrier = threading.Barrier(16)

    def post(_: int) -> httpx.Response:
        with server.client() as client:
            barrier.wait()
            return client.post("/evaluations", json=rating)

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(post, range(16)))

    assert [a.status_code for a in answers] == [200] * 16, [a.text for a in answers]
    assert [a.json()["created"] for a in answers].count(True) == 1
    assert sorted(a.json()["evaluation"]["revisions"] for a in answers) == list(range(1, 17))


def test_serve_deeply_nested_json_returns_422(server: Server) -> None:
    deep = "[" * 5000 + "]" * 5000
    with server.client() as client:
        search = client.post("/search", content=deep, headers={"Content-Type": "application/json"})
        rating = client.post("/evaluations", content='{"search_id": ' + deep + "}",
                             headers={"Content-Type": "application/json"})

    for response in (search, rating):
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "NestingTooDeep"


def test_serve_lists_its_first_version_with_product_types_and_catalog(server: Server, demo_catalog: Path) -> None:
    """serve's own publish of --catalog writes the version's card, as every load does."""
    with server.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        served = client.get("/version").json()["index"]["version"]
        listing = client.get("/admin/indexes")

    assert listing.status_code == 200, listing.text
    item = next(i for i in listing.json()["items"] if i["version"] == served)
    assert item["catalog_key"] == str(demo_catalog.resolve())
    assert item["categories"] == {name: 10 for name in ("bag", "dress", "hat", "lamp", "shoes", "sofa")}
    assert item["model"] == f"tiny-random-clip @ {item['model_fingerprint'][:6]}"  # named by source, not hash alone


def test_serve_admin_load_publishes_and_search_swaps_to_it(server: Server, tmp_path: Path) -> None:
    catalog = generate_demo_catalog(tmp_path / "next", per_category=4, categories=["lamp", "sofa"])
    s3 = boto3.client("s3", endpoint_url=server.moto_endpoint, region_name="us-east-1",
                      aws_access_key_id="moto-local", aws_secret_access_key="moto-local")
    s3.upload_file(str(catalog), "moodboard-local-artifacts", "catalogs/next/catalog.csv")
    for image in (catalog.parent / "images").iterdir():
        s3.upload_file(str(image), "moodboard-local-artifacts", f"catalogs/next/images/{image.name}")
    admin = {"Authorization": f"Bearer {TOKEN}"}

    def finished(client: httpx.Client, body: dict[str, object]) -> dict[str, object]:
        started = client.post("/admin/load", json=body)
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]
        deadline = time.monotonic() + 120
        job = client.get(f"/admin/load/{job_id}").json()
        while job["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = client.get(f"/admin/load/{job_id}").json()
        return job

    with server.client(headers=admin) as client:
        served = client.get("/version").json()["index"]["version"]
        # every product type of the served index is lost: refused by the loader itself without confirm
        refused = finished(client, {"catalog_key": "catalogs/next/catalog.csv"})
        assert refused["status"] == "failed", refused
        assert re.match(r"this load would remove \d+% of products \(\d+ of \d+\) and the product types 'bag', ",
                        refused["error"]), refused
        assert refused["error"].endswith("confirm it with confirm=true (POST /admin/load) or --confirm")
        assert client.get("/version").json()["index"]["version"] == served

        job = finished(client, {"catalog_key": "catalogs/next/catalog.csv", "confirm": True})
        assert job["status"] == "succeeded", job
        assert job["result"]["loaded"] == 8

        deadline = time.monotonic() + 30
        names: set[str] = set()
        while time.monotonic() < deadline:
            names = {c["name"] for c in client.get("/categories").json()["categories"]}
            if names == {"lamp", "sofa"}:
                break
            time.sleep(0.5)
        version = client.get("/version").json()["index"]["version"]

    assert names == {"lamp", "sofa"}, server.log()
    assert version == job["result"]["version"]


class FakeExporter:
    """Stands in for model_export.export: records calls, never touches the hub or torch."""

    DEFAULT_MODEL = "openai/clip-vit-base-patch32"

    def __init__(self, hub_reachable: bool) -> None:
        self.hub_reachable = hub_reachable
        self.calls: list[str] = []

    def export_model(self, model: str, out: Path) -> Path:
        from moodboard.errors import HubUnreachable

        self.calls.append(f"real:{model}")
        if not self.hub_reachable:
            raise HubUnreachable(f"cannot reach the Hugging Face Hub to download {model!r}")
        out.mkdir(parents=True)
        (out / "manifest.json").write_text("{}")
        return out

    def export_tiny(self, out: Path) -> Path:
        self.calls.append("tiny")
        out.mkdir(parents=True)
        (out / "manifest.json").write_text("{}")
        return out


@pytest.mark.parametrize("reachable", [True, False])
def test_serve_default_model_exports_once_and_falls_back_to_tiny(tmp_path: Path, reachable: bool,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from moodboard_local.commands.serve import default_model

    exporter = FakeExporter(hub_reachable=reachable)
    first = default_model(tmp_path, exporter=exporter)
    second = default_model(tmp_path, exporter=exporter)

    assert first == second
    if reachable:
        assert first == tmp_path / "models" / "openai-clip-vit-base-patch32"
        assert exporter.calls == ["real:openai/clip-vit-base-patch32"]
    else:
        assert first == tmp_path / "models" / "tiny-random-clip"
        assert exporter.calls == ["real:openai/clip-vit-base-patch32", "tiny", "real:openai/clip-vit-base-patch32"]
        assert "results will NOT be meaningful" in capsys.readouterr().err
