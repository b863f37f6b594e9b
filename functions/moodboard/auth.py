"""Admin auth for the HTTP API: the `AdminDep` dependency, and who a caller is.

In AWS, API Gateway's Cognito JWT authorizer validates the token before the Lambda runs and puts
the claims in the event (requestContext.authorizer.jwt.claims, which Mangum passes on as
`request.scope["aws.event"]`); with `Settings.trust_gateway_auth` the app accepts exactly those
requests. Locally the caller sends `Authorization: Bearer <Settings.admin_token>`; with no token
configured every admin call is refused. Failures are `Unauthorized` (401 with WWW-Authenticate:
Bearer, from moodboard.http_errors). Tokens are never logged.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from moodboard.errors import Unauthorized
from moodboard.settings import Settings, get_settings
from moodboard.team import LocalTeam

logger = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="Local admin token (MOODBOARD_ADMIN_TOKEN); a Cognito JWT in AWS")


@dataclass(frozen=True)
class Admin:
    """An authenticated admin: the JWT subject, or "admin" for the local token."""

    subject: str
    method: Literal["jwt", "token", "member"]


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


def require_admin(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Admin:
    """The admin calling this route; Unauthorized (401) when the request does not prove it is one."""
    if settings.trust_gateway_auth:
        claims = gateway_claims(request)
        if claims is None:
            raise Unauthorized("admin routes need a token validated by the API Gateway authorizer")
        subject = claims.get("sub") or claims.get("username") or claims.get("cognito:username")
        return Admin(subject=str(subject or "unknown"), method="jwt")
    expected = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if not expected and not settings.team_file:
        raise Unauthorized("admin access is disabled: no admin token is configured")
    if credentials is None:
        raise Unauthorized("admin routes need an Authorization: Bearer token")
    if expected and secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        return Admin(subject="admin", method="token")
    # A named team member's own token (`moodboard team add NAME`): they act, and rate, as themselves.
    member = LocalTeam(settings.team_file).who(credentials.credentials) if settings.team_file else None
    if member is not None:
        return Admin(subject=member, method="member")
    logger.info("admin token rejected for %s %s", request.method, request.url.path)
    raise Unauthorized("the admin token is not valid")


AdminDep = Annotated[Admin, Depends(require_admin)]
