"""The HTTP API's routes, read from the FastAPI routers the Lambdas serve (STYLE rule 20).

Each function serves one router: `search` the routes of `moodboard.search_routes.router`,
`evaluations` those of `moodboard.evaluation_routes.router`. A route's role is "admin" when it
depends on `moodboard.auth.require_admin` (`AdminDep`), "team" when it depends only on
`moodboard.auth.require_team` (`TeamDep`, which the admin check builds on), else "public"; team and
admin routes both need API Gateway's Cognito JWT authorizer (the app itself tells the roles apart,
from the `cognito:groups` claim). So a route added to either router is deployed, behind the
authorizer when it needs a team credential, with no list to update here. The apps' own `/docs`, `/redoc` and `/openapi.json` are not on
the routers and are not deployed.

Reading the routers imports the two route modules, not the Lambda entry modules (those read the
environment's settings and may preload the model): about 0.6 s, with numpy, hnswlib, Pillow and
botocore but no onnxruntime, torch or AWS client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

RouteRole = Literal["public", "team", "admin"]

# API Gateway HTTP API methods a route may use (ANY and HEAD are never produced by the routers).
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True)
class AppRoute:
    """One API Gateway route: method, path in API Gateway's spelling, the function serving it,
    and who may call it."""

    method: str
    path: str
    function: str
    role: RouteRole

    @property
    def authorized(self) -> bool:
        """Whether the route needs the Cognito JWT authorizer (a team or an admin route)."""
        return self.role != "public"

    @property
    def key(self) -> str:
        """The route key, "METHOD /path", as API Gateway spells it."""
        return f"{self.method} {self.path}"


def gateway_path(path: str, param_convertors: dict[str, Any]) -> str:
    """A FastAPI/Starlette path in HTTP API syntax: `{name}` stays, `{name:path}` becomes the greedy
    `{name+}` (last segment only), other convertors (`{name:int}`) drop their type."""
    from starlette.convertors import PathConvertor

    segments = []
    parts = path.split("/")
    for position, segment in enumerate(parts):
        if segment.startswith("{") and segment.endswith("}"):
            name = segment[1:-1].split(":", 1)[0]
            if isinstance(param_convertors.get(name), PathConvertor):
                if position != len(parts) - 1:
                    raise ValueError(f"{path}: API Gateway allows a greedy {{{name}+}} only as the last segment")
                segment = f"{{{name}+}}"
            else:
                segment = f"{{{name}}}"
        elif "{" in segment or "}" in segment:
            raise ValueError(f"{path}: API Gateway needs a path parameter to be a whole segment")
        segments.append(segment)
    return "/".join(segments)


def _dependencies(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def depends_on(route: Any, provider: Callable[..., Any]) -> bool:
    """Whether a FastAPI route runs `provider` for each request (directly, nested, or from its router)."""
    return any(sub.call is provider for sub in _dependencies(route.dependant))


def routes_of(router: Any, function: str) -> list[AppRoute]:
    """The routes of one FastAPI router, served by `function`."""
    from fastapi.routing import APIRoute

    from moodboard.auth import require_admin, require_team

    found = []
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"{function}: {route!r} is not an API route (a nested router or a plain Starlette "
                            "route): declare the route on the router itself so its API Gateway route can be derived")
        path = gateway_path(route.path, route.param_convertors)
        role: RouteRole = ("admin" if depends_on(route, require_admin)
                           else "team" if depends_on(route, require_team) else "public")
        for method in sorted(route.methods):
            if method not in METHODS:
                raise ValueError(f"{function}: {method} {route.path} is not a method API Gateway routes")
            found.append(AppRoute(method=method, path=path, function=function, role=role))
    return found


def check_unique(routes: Sequence[AppRoute]) -> tuple[AppRoute, ...]:
    """The routes, refused when two share a route key (two functions cannot serve one route)."""
    seen: dict[str, AppRoute] = {}
    for route in routes:
        if route.key in seen:
            raise ValueError(f"{route.key} is served by both {seen[route.key].function} and {route.function}")
        seen[route.key] = route
    return tuple(routes)


def app_routes() -> tuple[AppRoute, ...]:
    """Every route of both Lambda apps, search's first."""
    from moodboard.evaluation_routes import router as evaluations_router
    from moodboard.search_routes import router as search_router

    return check_unique([*routes_of(search_router, "search"), *routes_of(evaluations_router, "evaluations")])
