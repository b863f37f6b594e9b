"""The search API serving two models side by side: GET /models, and POST /search answering from the
model it names (`model`: a fingerprint or a unique prefix), with the answering model and its index
recorded in the history. Two fake embedders of different fingerprints, each with its own real index
bundle of the same generated catalog; history in moto's DynamoDB."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from fastapi.testclient import TestClient
from moodboard.history import HistoryStore
from moodboard.index import verify
from moodboard.ingest import load_catalog
from moodboard.runtime import Runtime, set_runtime
from moodboard.search_routes import create_search_app
from moodboard.settings import ComparedBundle, Settings, get_settings
from moodboard_local.demo_catalog import draw_mood_image, generate_demo_catalog
from moodboard_local.local_stack import ensure_resources
from moto import mock_aws

from tests.apigw import multipart
from tests.fakes import FakeEmbedder

BASE = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
TRAINED = "f9e8d7c6b5a4938271605f4e3d2c1b0a"


@dataclass
class TwoModels:
    client: TestClient
    history: HistoryStore
    base_version: str
    trained_version: str
    trained: FakeEmbedder


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoModels]:
    root = tmp_path_factory.mktemp("two-models")
    catalog = generate_demo_catalog(root / "catalog", per_category=4, categories=["dress", "lamp", "shoes"])
    # The compared model's index also holds hats (same rows first, so the same images), which the default's lacks.
    wider = generate_demo_catalog(root / "wider", per_category=4, categories=["dress", "lamp", "shoes", "hat"])
    base, trained = FakeEmbedder(fingerprint=BASE), FakeEmbedder(dim=24, fingerprint=TRAINED)
    base.source, trained.source = "tiny-random-clip", "tiny-random-clip (trained)"
    trained.near_copy_threshold = 0.867  # its bundle's own (ModelManifest.near_copy_threshold)
    build = Settings(cache_dir=root / "cache")
    load_catalog(catalog, base, root / "base-index", settings=build)
    load_catalog(wider, trained, root / "trained-index", settings=build)
    embedders = {"base-model": base, "trained-model": trained}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with mock_aws():
            s3 = boto3.client("s3", region_name="us-east-1")
            dynamodb = boto3.client("dynamodb", region_name="us-east-1")
            settings = Settings(artifacts_bucket="two-models-test", cache_dir=root / "cache",
                                model_dir=str(root / "base-model"), index_dir=str(root / "base-index"),
                                compare_models=[ComparedBundle(model_dir=str(root / "trained-model"),
                                                               index_dir=str(root / "trained-index"))])
            ensure_resources(settings, s3, dynamodb)
            runtime = Runtime(settings, s3=s3, dynamodb=dynamodb, load_embedder=lambda path: embedders[path.name])
            set_runtime(runtime)
            app = create_search_app(settings)
            app.dependency_overrides[get_settings] = lambda: settings
            try:
                with TestClient(app, base_url="http://testserver") as client:
                    yield TwoModels(client, runtime.history(), verify(root / "base-index").version,
                                    verify(root / "trained-index").version, trained)
            finally:
                set_runtime(None)


def test_models_lists_the_default_then_the_compared_model(two_models: TwoModels) -> None:
    response = two_models.client.get("/models")

    assert response.status_code == 200
    assert response.json() == {"models": [
        {"name": f"tiny-random-clip @ {BASE[:6]}", "fingerprint": BASE, "source": "tiny-random-clip",
         "default": True, "tiny": False, "trained": False, "description": None,
         "index_version": two_models.base_version, "count": 12},
        {"name": f"tiny-random-clip (trained) @ {TRAINED[:6]}", "fingerprint": TRAINED,
         "source": "tiny-random-clip (trained)", "default": False, "tiny": False, "trained": False,
         "description": None, "index_version": two_models.trained_version, "count": 16},
    ]}


def test_version_stays_about_the_default_model(two_models: TwoModels) -> None:
    body = two_models.client.get("/version").json()

    assert (body["model"]["fingerprint"], body["index"]["version"]) == (BASE, two_models.base_version)


def test_a_search_naming_a_short_fingerprint_answers_from_that_model_and_its_index(two_models: TwoModels) -> None:
    calls = len(two_models.trained.text_calls)

    response = two_models.client.post("/search", json={"category": "lamp", "text": "bright", "k": 3,
                                                        "model": TRAINED[:6]})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_fingerprint"], body["index_version"]) == (TRAINED, two_models.trained_version)
    assert len(two_models.trained.text_calls) > calls  # the compared model embedded the query
    record = two_models.history.get(body["search_id"])
    assert (record.model_fingerprint, record.index_version) == (TRAINED, two_models.trained_version)
    assert record.result_ids == [result["id"] for result in body["results"]]


def test_a_search_naming_no_model_or_the_default_answers_from_the_default(two_models: TwoModels) -> None:
    plain = two_models.client.post("/search", json={"category": "lamp", "text": "bright", "k": 3}).json()
    named = two_models.client.post("/search", json={"category": "lamp", "text": "bright", "k": 3,
                                                     "model": BASE}).json()

    for body in (plain, named):
        assert (body["model_fingerprint"], body["index_version"]) == (BASE, two_models.base_version)
        assert two_models.history.get(body["search_id"]).model_fingerprint == BASE


def test_an_uploaded_picture_with_a_model_form_field_uses_that_model(two_models: TwoModels) -> None:
    picture = io.BytesIO()
    draw_mood_image("ocean", seed=3, size=96).save(picture, "JPEG")
    body, content_type = multipart({"category": "dress", "k": "2", "model": TRAINED.upper()},
                                   {"image": ("mood.jpg", picture.getvalue(), "image/jpeg")})

    response = two_models.client.post("/search", content=body, headers={"Content-Type": content_type})

    assert response.status_code == 200, response.text
    assert response.json()["model_fingerprint"] == TRAINED
    assert response.json()["query"]["image_source"] == "upload"


def test_an_unknown_model_is_a_404_naming_the_list_url(two_models: TwoModels) -> None:
    response = two_models.client.post("/search", json={"category": "lamp", "model": "deadbeef00"})

    assert response.status_code == 404
    assert response.json() == {
        "detail": "no served model has the fingerprint 'deadbeef00' (see http://testserver/models)",
        "error": "UnknownModel", "models_url": "http://testserver/models", "models": [BASE, TRAINED]}


def test_a_model_shorter_than_six_characters_is_a_422(two_models: TwoModels) -> None:
    response = two_models.client.post("/search", json={"category": "lamp", "model": TRAINED[:5]})

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "model"]


def test_results_of_a_compared_model_link_to_its_product_routes(two_models: TwoModels) -> None:
    body = two_models.client.post("/search", json={"category": "hat", "text": "straw", "k": 2,
                                                    "model": TRAINED[:6]}).json()

    urls = [result["image_url"] for result in body["results"]]
    assert urls == [f"http://testserver/products/{result['id']}/image?model={TRAINED}" for result in body["results"]]
    image = two_models.client.get(urls[0])
    assert (image.status_code, image.headers["content-type"]) == (200, "image/jpeg")


def test_results_of_the_default_model_link_without_a_model(two_models: TwoModels) -> None:
    body = two_models.client.post("/search", json={"category": "lamp", "text": "bright", "k": 2}).json()

    assert [result["image_url"] for result in body["results"]] == [
        f"http://testserver/products/{result['id']}/image" for result in body["results"]]


def test_product_routes_read_the_named_models_index(two_models: TwoModels) -> None:
    client = two_models.client
    assert client.get("/products/hat-0001").status_code == 404  # the default model's index has no hats
    assert client.get("/products/hat-0001/image").status_code == 404

    product = client.get("/products/hat-0001", params={"model": TRAINED[:8]})
    image = client.get("/products/hat-0001/image", params={"model": TRAINED})

    assert product.status_code == 200, product.text
    assert (product.json()["category"], product.json()["image_url"]) == (
        "hat", f"http://testserver/products/hat-0001/image?model={TRAINED}")
    assert (image.status_code, image.headers["content-type"]) == (200, "image/jpeg")


def test_similar_of_a_compared_model_answers_and_records_from_its_index(two_models: TwoModels) -> None:
    response = two_models.client.get("/products/hat-0001/similar", params={"model": TRAINED[:6], "k": 3})

    assert response.status_code == 200, response.text
    body = response.json()
    assert [result["category"] for result in body["results"]] == ["hat"] * 3
    assert all(result["image_url"].endswith(f"/image?model={TRAINED}") for result in body["results"])
    record = two_models.history.get(body["search_id"])
    assert (record.model_fingerprint, record.index_version) == (TRAINED, two_models.trained_version)


def test_the_default_models_fingerprint_reads_the_default_index(two_models: TwoModels) -> None:
    response = two_models.client.get("/products/lamp-0001", params={"model": BASE})

    assert response.status_code == 200
    assert response.json()["image_url"] == "http://testserver/products/lamp-0001/image"


@pytest.mark.parametrize("route", ["/products/lamp-0001", "/products/lamp-0001/image", "/products/lamp-0001/similar"])
def test_a_product_route_naming_an_unknown_model_is_a_404(two_models: TwoModels, route: str) -> None:
    response = two_models.client.get(route, params={"model": "deadbeef00"})

    assert response.status_code == 404
    assert response.json()["error"] == "UnknownModel"
    assert response.json()["models"] == [BASE, TRAINED]


def test_a_product_route_naming_a_model_shorter_than_six_characters_is_a_422(two_models: TwoModels) -> None:
    response = two_models.client.get("/products/lamp-0001", params={"model": TRAINED[:5]})

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "model"]


def test_each_model_searches_with_its_own_near_copy_threshold_unless_the_request_gives_one(
        two_models: TwoModels) -> None:
    def threshold(**fields: object) -> float:
        body = two_models.client.post("/search", json={"category": "lamp", "text": "bright", "k": 2, **fields}).json()
        assert two_models.history.get(body["search_id"]).params["near_copy_threshold"] == body["query"][
            "near_copy_threshold"]
        return body["query"]["near_copy_threshold"]

    assert threshold() == 0.95  # the default model's bundle has none: the setting's default
    assert threshold(model=TRAINED) == 0.867
    assert threshold(model=TRAINED, near_copy_threshold=0.5) == 0.5
