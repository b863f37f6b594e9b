"""The banner says what a trained model is (GET /version's model.description), e.g. the offline LiT model."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.support import open_search

pytestmark = pytest.mark.browser

DESCRIPTION = ("LiT: pretrained EfficientNet-Lite0 image tower (ImageNet weights, locked) + text tower trained "
               "from scratch on 17,000 captions of 4,000 products of clothing-dataset (1,000 held out)")


def test_banner_says_what_a_trained_model_is(page: Page, app_url: str) -> None:
    def trained_version(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        body["model"].update(tiny=False, trained=True, description=DESCRIPTION)
        route.fulfill(response=response, body=json.dumps(body))

    page.route("**/config.json", lambda route: route.fulfill(json={}))
    page.route("**/version", trained_version)
    open_search(page, app_url)

    banner = page.locator("#demo-banner")
    expect(banner).to_be_visible()
    expect(banner).to_have_text(f"Model: {DESCRIPTION}")


TRAINED_FROM_RANDOM = ("tiny-random-clip fine-tuned (all weights) on 480 captions of 96 products of demo-catalog "
                       "(24 held out); the base is a random test model")


@pytest.mark.parametrize("reported_tiny", [False, True], ids=["tiny-false", "older-server-says-tiny"])
def test_a_model_trained_from_the_random_test_model_says_what_it_is_not_demo(page: Page, app_url: str,
                                                                             reported_tiny: bool) -> None:
    def trained_version(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        body["model"].update(tiny=reported_tiny, trained=True, description=TRAINED_FROM_RANDOM)
        route.fulfill(response=response, body=json.dumps(body))

    # An older `moodboard serve` wrote tinyModel: true into config.json for such a model too.
    page.route("**/config.json", lambda route: route.fulfill(json={"tinyModel": reported_tiny}))
    page.route("**/version", trained_version)
    open_search(page, app_url)

    banner = page.locator("#demo-banner")
    expect(banner).to_have_text(f"Model: {TRAINED_FROM_RANDOM}")
    expect(banner).to_be_visible()


def test_the_untrained_random_model_keeps_the_demo_banner(page: Page, app_url: str) -> None:
    page.route("**/config.json", lambda route: route.fulfill(json={}))
    open_search(page, app_url)

    expect(page.locator("#demo-banner")).to_have_text("Demo model: results from an untrained model are not meaningful.")


def test_version_reports_the_served_models_description(page: Page, app_url: str) -> None:
    response = page.request.get(f"{app_url}/version")
    model = response.json()["model"]
    assert model["trained"] is False
    assert model["description"] == "tiny-random-clip: a random test model, results are not meaningful"
