"""infra_cdk.routes: the API's routes read from the FastAPI routers (no synthesis here; test_stack
compares the synthesized routes with the apps')."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends

from infra_cdk.routes import AppRoute, app_routes, check_unique, routes_of
from moodboard.auth import AdminDep, Caller, TeamDep, require_admin, require_team
from tests.infra.conftest import ROOT


def keys(router: APIRouter) -> dict[str, str]:
    return {route.key: route.role for route in routes_of(router, "fn")}


@pytest.mark.parametrize(("path", "expected"), [
    ("/products/{product_id}", "/products/{product_id}"),
    ("/files/{rest:path}", "/files/{rest+}"),
    ("/pages/{number:int}/items", "/pages/{number}/items"),
])
def test_paths_are_written_the_way_api_gateway_reads_them(path: str, expected: str) -> None:
    router = APIRouter()
    router.get(path)(lambda: None)
    assert keys(router) == {f"GET {expected}": "public"}


@pytest.mark.parametrize("path", ["/files/{rest:path}/meta", "/files/v{version}"])
def test_paths_api_gateway_cannot_route_are_refused(path: str) -> None:
    router = APIRouter()
    router.get(path)(lambda: None)
    with pytest.raises(ValueError, match="API Gateway"):
        routes_of(router, "fn")


def current_admin(admin: AdminDep) -> Caller:
    """A dependency built on the admin check (module level: the route annotations are strings)."""
    return admin


def test_a_route_is_admin_when_it_runs_the_admin_check_directly_nested_or_from_its_router() -> None:
    router = APIRouter()
    router.get("/public")(lambda: None)

    @router.delete("/param/{item}")
    def param(item: str, _: AdminDep) -> None: ...

    @router.put("/nested")
    def nested(_: Annotated[Caller, Depends(current_admin)]) -> None: ...

    @router.post("/team")
    def team(_: TeamDep) -> None: ...

    assert keys(router) == {"GET /public": "public", "DELETE /param/{item}": "admin", "PUT /nested": "admin",
                            "POST /team": "team"}
    guarded = APIRouter(dependencies=[Depends(require_admin)])
    guarded.patch("/guarded")(lambda: None)
    assert keys(guarded) == {"PATCH /guarded": "admin"}
    members = APIRouter(dependencies=[Depends(require_team)])
    members.patch("/members")(lambda: None)
    assert keys(members) == {"PATCH /members": "team"}
    assert [route.authorized for route in routes_of(router, "fn")] == [False, True, True, True]


def test_a_route_with_several_methods_gives_one_route_per_method() -> None:
    router = APIRouter()
    router.api_route("/both", methods=["GET", "POST"])(lambda: None)
    assert keys(router) == {"GET /both": "public", "POST /both": "public"}


def test_a_non_api_route_or_a_nested_router_is_refused_rather_than_left_out() -> None:
    raw = APIRouter()
    raw.add_route("/raw", lambda request: None)
    nested = APIRouter()
    nested.include_router(raw)
    for router in (raw, nested):
        with pytest.raises(TypeError, match="not an API route"):
            routes_of(router, "fn")


def test_one_route_key_on_two_functions_is_refused() -> None:
    route = AppRoute(method="GET", path="/x", function="search", role="public")
    with pytest.raises(ValueError, match="GET /x is served by both search and evaluations"):
        check_unique([route, AppRoute(method="GET", path="/x", function="evaluations", role="public")])


def test_the_apps_routes_include_both_functions_and_team_and_admin_routes() -> None:
    routes = app_routes()
    assert {route.function for route in routes} == {"search", "evaluations"}
    role = {route.key: route.role for route in routes}
    assert (role["GET /evaluations"], role["POST /evaluations"]) == ("team", "public")
    # what changes what shoppers see or what the bucket holds is admin-only; the version list is team-readable
    assert {key for key, value in role.items() if value == "admin"} == {
        "POST /admin/indexes/{version}/promote", "POST /admin/load", "GET /admin/load/{job_id}",
        "POST /admin/load/dry-run", "POST /admin/catalog-uploads"}
    assert role["GET /admin/indexes"] == "team"
    # the search function's one team route: a round's picture upload, which needs its image decoder
    assert {route.key for route in routes if route.function == "search" and route.authorized} == {
        "POST /rounds/pictures"}
    # the served models are listed publicly, like /version
    assert [(r.function, r.role) for r in routes if r.key == "GET /models"] == [("search", "public")]


def test_reading_the_routes_loads_no_model_runtime_no_entry_module_and_no_aws_client() -> None:
    code = (
        "import json, sys, botocore.session\n"
        "def refuse(*a, **k): raise RuntimeError('an AWS client was created')\n"
        "botocore.session.Session.create_client = refuse\n"
        "from infra_cdk.routes import app_routes\n"
        "app_routes()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    # A deployer's shell may hold settings for `moodboard serve`: reading the routes must not act on them.
    env = {**os.environ, "MOODBOARD_PRELOAD": "true", "MOODBOARD_MODEL_DIR": "/nonexistent/model",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "functions")])}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    loaded = {name.split(".")[0] for name in json.loads(result.stdout)}
    assert not loaded & {"onnxruntime", "torch", "transformers", "optimum", "tokenizers"}
    # The Lambda entry modules read settings (search preloads) and build apps: the routes come from the library.
    assert not loaded & {"search", "evaluations", "loader"}
