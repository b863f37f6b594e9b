"""Admin auth: bearer token locally, API Gateway JWT claims in AWS, driven through Mangum with v2 events."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from mangum import Mangum

from moodboard.auth import AdminDep
from moodboard.http_errors import install
from moodboard.settings import Settings, get_settings

EVENTS = Path(__file__).parents[1] / "events"
TOKEN = "test-admin-token"


def _app(settings: Settings) -> Mangum:
    app = FastAPI()
    install(app)

    @app.get("/history")
    def whoami(admin: AdminDep) -> dict[str, str]:
        return {"subject": admin.subject, "method": admin.method}

    app.dependency_overrides[get_settings] = lambda: settings
    return Mangum(app, lifespan="off")


def _event(name: str, *, authorization: str | None = None) -> dict[str, Any]:
    event = copy.deepcopy(json.loads((EVENTS / name).read_text()))
    event["headers"].pop("authorization", None)
    if authorization is not None:
        event["headers"]["authorization"] = authorization
    return event


def _call(settings: Settings, event: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    response = _app(settings)(event, None)
    return response["statusCode"], response["headers"], json.loads(response["body"])


def test_admin_route_without_auth_returns_401(settings: Settings) -> None:
    status, headers, body = _call(settings, _event("evaluations_admin_bearer.json"))

    assert status == 401
    assert headers["www-authenticate"] == "Bearer"
    assert body == {"detail": "admin routes need an Authorization: Bearer token", "error": "Unauthorized"}


def test_admin_route_wrong_token_returns_401(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    status, _, body = _call(settings, _event("evaluations_admin_bearer.json", authorization="Bearer guess"))

    assert (status, body["detail"]) == (401, "the admin token is not valid")
    assert "guess" not in caplog.text


def test_admin_route_other_scheme_returns_401(settings: Settings) -> None:
    status, _, _ = _call(settings, _event("evaluations_admin_bearer.json", authorization=f"Basic {TOKEN}"))

    assert status == 401


def test_admin_route_right_token_returns_200(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    status, _, body = _call(settings, _event("evaluations_admin_bearer.json", authorization=f"Bearer {TOKEN}"))

    assert (status, body) == (200, {"subject": "admin", "method": "token"})
    assert TOKEN not in caplog.text


def test_admin_route_without_configured_token_refuses_everyone(settings: Settings) -> None:
    no_token = settings.model_copy(update={"admin_token": None})

    status, _, body = _call(no_token, _event("evaluations_admin_bearer.json", authorization="Bearer "))

    assert status == 401
    assert body["detail"] == "admin access is disabled: no admin token is configured"


def test_trusted_gateway_claims_grant_admin(settings: Settings) -> None:
    trusted = settings.model_copy(update={"trust_gateway_auth": True})

    status, _, body = _call(trusted, _event("evaluations_admin_jwt.json"))

    assert (status, body) == (200, {"subject": "7d8e9f10-1112-1314-1516-171819202122", "method": "jwt"})


def test_trusted_gateway_without_claims_refuses_even_the_local_token(settings: Settings) -> None:
    trusted = settings.model_copy(update={"trust_gateway_auth": True})

    status, _, _ = _call(trusted, _event("evaluations_admin_bearer.json", authorization=f"Bearer {TOKEN}"))

    assert status == 401


def test_claims_are_ignored_unless_the_gateway_is_trusted(settings: Settings) -> None:
    status, _, _ = _call(settings, _event("evaluations_admin_jwt.json"))

    assert status == 401
