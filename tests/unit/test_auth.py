"""Team and admin auth: bearer tokens locally (the admin token, named members with their role), API
Gateway JWT claims in AWS (admin by the cognito:groups claim), driven through Mangum with v2 events."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from mangum import Mangum

from moodboard.auth import ADMIN_GROUP, AdminDep, TeamDep, admin_action
from moodboard.http_errors import install
from moodboard.settings import Settings, get_settings
from moodboard.team import LocalTeam

EVENTS = Path(__file__).parents[1] / "events"
TOKEN = "test-admin-token"
PROMOTE = "/admin/indexes/v1/promote"


def _app(settings: Settings) -> Mangum:
    app = FastAPI()
    install(app)

    @app.get("/history")
    def whoami(admin: TeamDep) -> dict[str, str]:
        return {"subject": admin.subject, "method": admin.method}

    @app.get("/team/me")
    def role(me: TeamDep) -> dict[str, str]:
        return {"subject": me.subject, "role": me.role}

    @app.post(PROMOTE, openapi_extra=admin_action("promoting an index version"))
    def promote(admin: AdminDep) -> dict[str, str]:
        return {"subject": admin.subject, "role": admin.role}

    app.dependency_overrides[get_settings] = lambda: settings
    return Mangum(app, lifespan="off")


def _event(name: str, *, authorization: str | None = None, path: str | None = None,
           groups: str | list[str] | None = None) -> dict[str, Any]:
    event = copy.deepcopy(json.loads((EVENTS / name).read_text()))
    event["headers"].pop("authorization", None)
    if authorization is not None:
        event["headers"]["authorization"] = authorization
    if path == PROMOTE:
        event["rawPath"] = event["requestContext"]["http"]["path"] = PROMOTE
        event["requestContext"]["http"]["method"] = "POST"
        event["routeKey"] = f"POST {PROMOTE}"
    elif path is not None:
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
    if groups is not None:
        event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] = groups
    return event


def _call(settings: Settings, event: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    response = _app(settings)(event, None)
    return response["statusCode"], response["headers"], json.loads(response["body"])


# The 401s name what they guard on a team route (/history) and an admin route alike.
@pytest.mark.parametrize("path", [None, PROMOTE])
def test_admin_route_without_auth_returns_401(settings: Settings, path: str | None) -> None:
    status, headers, body = _call(settings, _event("evaluations_admin_bearer.json", path=path))

    assert status == 401
    assert headers["www-authenticate"] == "Bearer"
    assert body == {"detail": "this route needs an Authorization: Bearer token: a team member's or the admin's",
                    "error": "Unauthorized"}


@pytest.mark.parametrize("path", [None, PROMOTE])
def test_admin_route_wrong_token_returns_401(settings: Settings, caplog: pytest.LogCaptureFixture,
                                             path: str | None) -> None:
    caplog.set_level(logging.DEBUG)

    status, _, body = _call(settings, _event("evaluations_admin_bearer.json", authorization="Bearer guess", path=path))

    assert (status, body["detail"]) == (401, "the token is neither a team member's nor the admin's")
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
    assert body["detail"] == "team and admin routes are disabled: no admin token or team file is configured"


SUBJECT = "7d8e9f10-1112-1314-1516-171819202122"


def test_trusted_gateway_claims_admit_a_team_member(settings: Settings) -> None:
    trusted = settings.model_copy(update={"trust_gateway_auth": True})

    status, _, body = _call(trusted, _event("evaluations_admin_jwt.json"))

    assert (status, body) == (200, {"subject": SUBJECT, "method": "jwt"})
    # the sample token's groups claim, "[admins]" as API Gateway writes an array, is not the admin group
    assert _call(trusted, _event("evaluations_admin_jwt.json", path="/team/me"))[2] == {"subject": SUBJECT,
                                                                                      "role": "member"}


@pytest.mark.parametrize("groups", [None, "[admins]", "[]", f"[{ADMIN_GROUP}-not]", ["admins"]])
def test_a_jwt_without_the_admin_group_gets_403_on_an_admin_route(settings: Settings, groups: Any) -> None:
    trusted = settings.model_copy(update={"trust_gateway_auth": True})
    event = _event("evaluations_admin_jwt.json", path=PROMOTE, groups=groups)
    if groups is None:
        del event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"]

    status, headers, body = _call(trusted, event)

    assert status == 403 and "www-authenticate" not in headers
    assert body == {"detail": "promoting an index version needs the admin role; ask an admin", "error": "Forbidden",
                    "role": "member", "needs": "admin"}


@pytest.mark.parametrize("groups", [f"[{ADMIN_GROUP}]", f"[readers {ADMIN_GROUP}]", [ADMIN_GROUP, "readers"]])
def test_a_jwt_in_the_admin_group_passes_an_admin_route(settings: Settings, groups: Any) -> None:
    trusted = settings.model_copy(update={"trust_gateway_auth": True})

    status, _, body = _call(trusted, _event("evaluations_admin_jwt.json", path=PROMOTE, groups=groups))

    assert (status, body) == (200, {"subject": SUBJECT, "role": "admin"})


def test_the_local_admin_token_is_an_admin(settings: Settings) -> None:
    status, _, body = _call(settings, _event("evaluations_admin_bearer.json", authorization=f"Bearer {TOKEN}",
                                             path=PROMOTE))

    assert (status, body) == (200, {"subject": "admin", "role": "admin"})


def test_a_member_gets_403_on_an_admin_route_and_an_admin_member_passes(settings: Settings, tmp_path: Path) -> None:
    team = LocalTeam(tmp_path / "team.json")
    alice, boss = team.add("alice"), team.add("boss", admin=True)
    with_team = settings.model_copy(update={"team_file": tmp_path / "team.json"})

    status, _, body = _call(with_team, _event("evaluations_admin_bearer.json", authorization=f"Bearer {alice}",
                                              path=PROMOTE))
    assert (status, body["detail"], body["error"]) == (
        403, "promoting an index version needs the admin role; ask an admin", "Forbidden")
    assert _call(with_team, _event("evaluations_admin_bearer.json", authorization=f"Bearer {alice}",
                                   path="/team/me"))[2] == {"subject": "alice", "role": "member"}
    assert _call(with_team, _event("evaluations_admin_bearer.json", authorization=f"Bearer {boss}",
                                   path=PROMOTE))[:3:2] == (200, {"subject": "boss", "role": "admin"})


def test_a_team_file_written_before_roles_makes_plain_members(settings: Settings, tmp_path: Path) -> None:
    team = LocalTeam(tmp_path / "team.json")
    token = team.add("carol", admin=True)
    old = json.loads((tmp_path / "team.json").read_text())
    del old["members"]["carol"]["role"]  # as `team add` wrote it before roles existed
    (tmp_path / "team.json").write_text(json.dumps(old))
    with_team = settings.model_copy(update={"team_file": tmp_path / "team.json"})

    assert [(m.name, m.role) for m in team.members()] == [("carol", "member")]
    assert _call(with_team, _event("evaluations_admin_bearer.json", authorization=f"Bearer {token}",
                                   path="/team/me"))[::2] == (200, {"subject": "carol", "role": "member"})
    assert _call(with_team, _event("evaluations_admin_bearer.json", authorization=f"Bearer {token}",
                                   path=PROMOTE))[0] == 403


@pytest.mark.parametrize("path", [None, PROMOTE])
def test_trusted_gateway_without_claims_refuses_even_the_local_token(settings: Settings, path: str | None) -> None:
    trusted = settings.model_copy(update={"trust_gateway_auth": True})

    status, _, body = _call(trusted, _event("evaluations_admin_bearer.json", authorization=f"Bearer {TOKEN}",
                                            path=path))

    assert (status, body["detail"]) == (401, "this route needs a token validated by the API Gateway authorizer")


def test_claims_are_ignored_unless_the_gateway_is_trusted(settings: Settings) -> None:
    status, _, _ = _call(settings, _event("evaluations_admin_jwt.json"))

    assert status == 401
