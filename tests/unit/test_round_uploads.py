"""Uploaded pictures as round inspirations, through the app `moodboard serve` builds (search routes and
team routes on one app) against moto: the upload checked with the search's limits and stored once
under rounds/pictures/, a round of uploaded pictures, its run through /search as an upload (history
keeps the bytes' sha256, which the run must match), the picture served to team members, and a rating."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from moodboard.artifacts import ArtifactStore
from moodboard.errors import Conflict
from moodboard.evaluation_routes import mount
from moodboard.history import HistoryRecord, HistoryStore
from moodboard.ingest import load_catalog
from moodboard.round_pictures import PICTURES_PREFIX, UnknownPicture, picture_key
from moodboard.rounds import RoundItem, RoundRequest, RunRequest, round_from_request, validate_run
from moodboard.runtime import Runtime, set_runtime
from moodboard.search_routes import create_search_app
from moodboard.settings import Settings, get_settings
from moodboard.team import LocalTeam
from moodboard_local.demo_catalog import draw_mood_image, generate_demo_catalog
from moodboard_local.local_stack import ensure_resources
from moto import mock_aws
from PIL import Image
from pydantic import ValidationError

from tests.fakes import FakeEmbedder
from tests.integration.test_search_api import jpeg, png_bomb

BUCKET = "moodboard-round-uploads-test"
MAX_IMAGE = 64 * 1024
MAX_PIXELS = 4_000_000


OCEAN = jpeg(draw_mood_image("ocean", seed=3, size=96))
EARTHY = jpeg(draw_mood_image("earthy", seed=5, size=96))


def noise_png(side: int = 300) -> bytes:
    """A PNG over MAX_IMAGE bytes (random pixels do not compress)."""
    import numpy as np

    pixels = np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    assert len(buffer.getvalue()) > MAX_IMAGE
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("round-uploads")
    catalog = generate_demo_catalog(root / "catalog", per_category=4, categories=["dress", "shoes"])
    load_catalog(catalog, FakeEmbedder(), root / "index", settings=Settings(cache_dir=root / "cache"))
    return root / "index"


@dataclass
class Api:
    client: TestClient
    tokens: dict[str, str]
    s3: Any
    history: HistoryStore

    def auth(self, who: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def upload(self, data: bytes, *, who: str = "alice", name: str = "picture.jpg") -> Any:
        return self.client.post("/rounds/pictures", files={"image": (name, data, "image/jpeg")},
                                headers=self.auth(who) if who else {})

    def search_upload(self, data: bytes, category: str) -> Any:
        return self.client.post("/search", files={"image": ("picture.jpg", data, "image/jpeg")},
                                data={"category": category, "k": "3"})

    def stored_keys(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=PICTURES_PREFIX)
        return sorted(entry["Key"] for entry in listed.get("Contents", []))


@pytest.fixture
def api(tmp_path: Path, bundle: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        team = LocalTeam(tmp_path / "team.json")
        tokens = {"alice": team.add("alice"), "bob": team.add("bob")}
        settings = Settings(artifacts_bucket=BUCKET, cache_dir=tmp_path / "cache", admin_token="admin-for-tests",
                            team_file=tmp_path / "team.json", max_image_bytes=MAX_IMAGE, max_image_pixels=MAX_PIXELS)
        s3 = boto3.client("s3", region_name="us-east-1")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        ensure_resources(settings, s3, dynamodb)
        ArtifactStore(BUCKET, s3).publish(bundle)
        set_runtime(Runtime(settings, s3=s3, dynamodb=dynamodb, embedder=FakeEmbedder()))
        app = create_search_app(settings)  # as `moodboard serve` builds it: search routes, then the team's
        mount(app)
        app.dependency_overrides[get_settings] = lambda: settings
        try:
            yield Api(TestClient(app), tokens, s3, HistoryStore(dynamodb, settings.history_table))
        finally:
            set_runtime(None)


def test_an_uploaded_picture_is_stored_once_under_its_sha256(api: Api) -> None:
    first = api.upload(OCEAN)
    again = api.upload(OCEAN, who="bob", name="same-picture-other-name.jpg")

    sha = hashlib.sha256(OCEAN).hexdigest()
    assert first.status_code == 201, first.text
    assert first.json() == {"picture": f"{sha}.jpg", "sha256": sha, "media_type": "image/jpeg", "bytes": len(OCEAN),
                            "width": 96, "height": 96, "created": True}
    assert again.status_code == 201 and again.json()["picture"] == f"{sha}.jpg" and again.json()["created"] is False
    assert api.stored_keys() == [f"rounds/pictures/{sha}.jpg"]
    stored = api.s3.get_object(Bucket=BUCKET, Key=f"rounds/pictures/{sha}.jpg")
    assert stored["Body"].read() == OCEAN and stored["ContentType"] == "image/jpeg"


def test_the_upload_needs_a_team_member(api: Api) -> None:
    response = api.client.post("/rounds/pictures", files={"image": ("a.jpg", OCEAN, "image/jpeg")})
    assert response.status_code == 401
    assert api.stored_keys() == []


@pytest.mark.parametrize(("name", "data", "status", "error"), [
    ("over the byte limit", noise_png(), 413, "ImageTooLarge"),
    ("over the pixel limit", png_bomb(), 413, "ImageTooLarge"),
    ("not an image", b"just some text, not a picture at all", 415, "UnsupportedImage"),
    ("a truncated JPEG", OCEAN[: len(OCEAN) // 2], 422, "CorruptImage"),
])
def test_a_bad_picture_is_refused_as_search_refuses_it_and_nothing_is_lost(api: Api, name: str, data: bytes,
                                                                             status: int, error: str) -> None:
    kept = api.upload(EARTHY).json()["picture"]

    refused = api.upload(data)
    searched = api.search_upload(data, "dress")

    assert (refused.status_code, refused.json()["error"]) == (status, error), name
    assert (searched.status_code, searched.json()["error"]) == (status, error), name  # the same as /search
    assert refused.json()["detail"]
    assert api.stored_keys() == [picture_key(kept)]  # nothing added, nothing already stored lost
    assert api.s3.get_object(Bucket=BUCKET, Key=picture_key(kept))["Body"].read() == EARTHY


def test_a_round_of_uploaded_pictures_runs_through_search_and_is_rated(api: Api) -> None:
    ocean = api.upload(OCEAN).json()["picture"]
    earthy = api.upload(EARTHY).json()["picture"]
    made = api.client.post("/rounds", headers=api.auth(), json={"name": "Uploads", "k": 3, "items": [
        {"item_id": "i1", "picture": ocean, "category": "dress", "note": "from a magazine"},
        {"item_id": "i2", "picture": earthy, "category": "shoes"}]})
    assert made.status_code == 201, made.text
    round_id = made.json()["round_id"]
    assert [(i["picture"], i["image_url"]) for i in made.json()["items"]] == [(ocean, None), (earthy, None)]

    # the team page fetches each picture (as a team member) and sends it to /search as an upload
    searches = {}
    for item_id, category in (("i1", "dress"), ("i2", "shoes")):
        picture = api.client.get(f"/rounds/{round_id}/items/{item_id}/picture", headers=api.auth("bob"))
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
        searched = api.search_upload(picture.content, category)
        assert searched.status_code == 200, searched.text
        searches[item_id] = searched.json()["search_id"]
    assert api.client.get(f"/rounds/{round_id}/items/i1/picture", headers=api.auth()).content == OCEAN
    assert api.history.get(searches["i1"]).params["image_sha256"] == hashlib.sha256(OCEAN).hexdigest()

    # a search of the right product type made from another picture does not count for an item
    swapped = api.search_upload(EARTHY, "dress").json()["search_id"]
    wrong = api.client.post(f"/rounds/{round_id}/runs", headers=api.auth(),
                            json={"searches": {"i1": swapped, "i2": searches["i2"]}})
    assert wrong.status_code == 409 and "uploaded picture" in wrong.json()["detail"]

    ran = api.client.post(f"/rounds/{round_id}/runs", headers=api.auth(), json={"searches": searches})
    assert ran.status_code == 200, ran.text

    queue = api.client.get(f"/rounds/{round_id}/queue", headers=api.auth()).json()
    first = queue["runs"][0]["items"][0]
    assert (first["item_id"], first["picture"], first["image_url"]) == ("i1", ocean, None)
    product = first["result_ids"][0]
    rated = api.client.post("/team/evaluations", headers=api.auth(),
                            json={"search_id": first["search_id"], "product_id": product, "rating": 1, "grade": 2})
    assert rated.status_code == 200, rated.text
    report = api.client.get(f"/rounds/{round_id}/report", headers=api.auth()).json()
    assert {p["rater"]: p["rated"] for p in report["runs"][0]["progress"]} == {"alice": 1}


def test_round_pictures_that_are_not_stored_or_not_pictures_are_refused(api: Api) -> None:
    stored = api.upload(OCEAN).json()["picture"]
    missing = f"{'0' * 64}.jpg"
    unknown = api.client.post("/rounds", headers=api.auth(), json={"name": "x", "items": [
        {"picture": missing, "category": "dress"}]})
    assert unknown.status_code == 404
    assert unknown.json()["upload_url"] == "/rounds/pictures" and missing in unknown.json()["detail"]
    for bad in ({"picture": "../../indexes/CURRENT", "category": "dress"},
                {"picture": f"{'A' * 64}.jpg", "category": "dress"},
                {"picture": stored, "image_url": "https://pin.example/1", "category": "dress"},
                {"category": "dress"}):
        response = api.client.post("/rounds", headers=api.auth(), json={"name": "x", "items": [bad]})
        assert response.status_code == 422, (bad, response.text)
    assert api.client.get("/rounds", headers=api.auth()).json()["items"] == []

    made = api.client.post("/rounds", headers=api.auth(), json={"name": "mixed", "items": [
        {"item_id": "up", "picture": stored, "category": "dress"},
        {"item_id": "web", "image_url": "https://pin.example/1", "category": "shoes"}]}).json()
    gone = api.client.get("/rounds/nope/items/up/picture", headers=api.auth())
    assert gone.status_code == 404 and gone.json()["list_url"].endswith("/rounds")
    assert api.client.get(f"/rounds/{made['round_id']}/items/web/picture", headers=api.auth()).status_code == 404
    assert api.client.get(f"/rounds/{made['round_id']}/items/up/picture").status_code == 401


def test_validate_run_ties_an_uploaded_item_to_a_search_of_its_bytes() -> None:
    sha = hashlib.sha256(OCEAN).hexdigest()
    request = RoundRequest(name="r", items=[RoundItem(item_id="i1", picture=f"{sha}.jpg", category="dress")])
    made = round_from_request(request, created_by="alice", urls={}, picture_stored=lambda name: True)
    with pytest.raises(UnknownPicture):
        round_from_request(request, created_by="alice", urls={}, picture_stored=lambda name: False)

    def search(params: dict[str, Any]) -> HistoryRecord:
        return HistoryRecord(search_id="s1", created_at="2026-12-01T00:00:00.000Z", kind="image", category="dress",
                             params={"weights": {"w_image": 1.0}, **params}, result_ids=["p1"],
                             model_fingerprint="fp", index_version="v1", ttl=0)

    run = validate_run(made, RunRequest(searches={"i1": "s1"}), {"s1": search({"image_sha256": sha})},
                       created_by="alice")
    assert run.searches == {"i1": "s1"}
    for params in ({"image_sha256": hashlib.sha256(EARTHY).hexdigest()}, {}, {"image_source": "url"}):
        with pytest.raises(Conflict):
            validate_run(made, RunRequest(searches={"i1": "s1"}), {"s1": search(params)}, created_by="alice")
    with pytest.raises(ValidationError):
        RoundItem(picture="rounds/pictures/x.jpg", category="dress")
