"""Team and admin auth for the HTTP API: the `TeamDep` and `AdminDep` dependencies, and who a caller is.

Two roles. A team member rates, works rounds and reads the dashboards, history and curated URLs
(`TeamDep`); an admin may also change what shoppers see or what the bucket holds: promote an index
version, dry-run or start a catalog load, create a catalog upload (`AdminDep`).

In AWS, API Gateway's Cognito JWT authorizer validates the token before the Lambda runs and puts
the claims in the event (requestContext.authorizer.jwt.claims, which Mangum passes on as
`request.scope["aws.event"]`); with `Settings.trust_gateway_auth` the app accepts exactly those
requests, and the caller is an admin when the `cognito:groups` claim names `ADMIN_GROUP` (the stack
creates that group in the user pool). Locally the caller sends `Authorization: Bearer <token>`:
`Settings.admin_token` is an admin; a named member's token (`moodboard team add NAME [--admin]`)
has the member's role; with no token configured every call is refused.

Failures are raised here and turned into HTTP in moodboard.http_errors: `Unauthorized` (401, with
WWW-Authenticate: Bearer) when the request proves no team credential, `Forbidden` (403) when a team
member calls an admin route. Tokens are never logged.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from moodboard.errors import Forbidden, Unauthorized
from moodboard.settings import Settings, get_settings
from moodboard.team import ADMIN, MEMBER, LocalTeam, Role

logger = logging.getLogger(__name__)

ADMIN_GROUP = "moodboard-admins"
"""The Cognito user pool group whose members are admins (infra_cdk.api creates it)."""
GROUPS_CLAIM = "cognito:groups"
# An admin route names what it does in its OpenAPI extra, for the 403 a team member gets.
ADMIN_ACTION = "x-admin-action"

# The 401s of team and admin routes alike (an admin route first needs a team credential; a member
# without the admin role then gets Forbidden).
NO_TOKEN = "this route needs an Authorization: Bearer token: a team member's or the admin's"
BAD_TOKEN = "the token is neither a team member's nor the admin's"
DISABLED = "team and admin routes are disabled: no admin token or team file is configured"

_bearer = HTTPBearer(auto_error=False, description="Local admin or team member token; a Cognito JWT in AWS")


@dataclass(frozen=True)
class Caller:
    """An authenticated team member: the JWT subject, the member's name, or "admin" for the local
    token; how they proved it; and their role."""

    subject: str
    method: Literal["jwt", "token", "member"]
    role: Role = MEMBER

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


def gateway_claims(request: Request) -> dict[str, Any] | None:
    """The JWT claims API Gateway's authorizer attached to this request's event, if any."""
    event = request.scope.get("aws.event")
    if not isinstance(event, dict):
        return None
    claims = ((event.get("requestContext") or {}).get("authorizer") or {}).get("jwt", {}).get("claims")
    return claims if isinstance(claims, dict) and claims else None


def gateway_subject(request: Request, settings: Settings) -> str | None:
    """The `sub` of a caller API Gateway authenticated, when this deployment trusts the gateway."""
    if not settings.trust_gateway_auth:
        return None
    claims = gateway_claims(request)
    subject = claims.get("sub") if claims else None
    return str(subject) if subject else None


def claim_groups(claims: dict[str, Any]) -> set[str]:
    """The Cognito groups in the claims: a list, or the string API Gateway's HTTP API makes of an
    array claim ("[moodboard-admins other]")."""
    value = claims.get(GROUPS_CLAIM)
    if isinstance(value, list):
        return {str(item) for item in value}
    if isinstance(value, str):
        return {part for part in re.split(r"[\s,\[\]\"]+", value) if part}
    return set()


def require_team(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The team member calling this route, with their role; Unauthorized (401) when the request does
    not prove it is one."""
    if settings.trust_gateway_auth:
        claims = gateway_claims(request)
        if claims is None:
            raise Unauthorized("this route needs a token validated by the API Gateway authorizer")
        subject = claims.get("sub") or claims.get("username") or claims.get("cognito:username")
        role: Role = ADMIN if ADMIN_GROUP in claim_groups(claims) else MEMBER
        return Caller(subject=str(subject or "unknown"), method="jwt", role=role)
    expected = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if not expected and not settings.team_file:
        raise Unauthorized(DISABLED)
    if credentials is None:
        raise Unauthorized(NO_TOKEN)
    if expected and secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        return Caller(subject="admin", method="token", role=ADMIN)
    # A named team member's own token (`moodboard team add NAME`): they act, and rate, as themselves.
    member = LocalTeam(settings.team_file).member(credentials.credentials) if settings.team_file else None
    if member is not None:
        return Caller(subject=member.name, method="member", role=member.role)
    logger.info("bearer token rejected for %s %s", request.method, request.url.path)
    raise Unauthorized(BAD_TOKEN)


def admin_action(action: str) -> dict[str, str]:
    """The OpenAPI extra an admin route declares: what it does, named in a team member's 403."""
    return {ADMIN_ACTION: action}


def require_admin(request: Request, caller: Annotated[Caller, Depends(require_team)]) -> Caller:
    """The admin calling this route; Forbidden (403) for a team member without the admin role."""
    if caller.is_admin:
        return caller
    route = request.scope.get("route")
    action = (getattr(route, "openapi_extra", None) or {}).get(ADMIN_ACTION) or f"{request.method} {request.url.path}"
    logger.info("%s (%s) refused %s %s: not an admin", caller.subject, caller.method, request.method,
                request.url.path)
    raise Forbidden(f"{action} needs the admin role; ask an admin", details={"role": caller.role, "needs": ADMIN})


TeamDep = Annotated[Caller, Depends(require_team)]
AdminDep = Annotated[Caller, Depends(require_admin)]
