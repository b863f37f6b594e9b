"""The search API's routes (docs/contracts.md, "HTTP API") and the app factory that wires them.

Routes only parse the request and call moodboard.search_service; the Lambda module
(functions/search/app.py) builds the app and wraps it in Mangum, and `moodboard serve` mounts the
same router next to the evaluation routes and the frontend.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from moodboard import __version__, search_service
from moodboard.api_models import (
    MAX_K,
    CategoriesResponse,
    HealthResponse,
    ModelsResponse,
    ProductOut,
    SearchRequest,
    SearchResponse,
    SimilarResponse,
    VersionResponse,
)
from moodboard.deps import EmbedderDep, FetcherDep, HistoryDep, IndexDep, ServedModelsDep, SettingsDep
from moodboard.errors import InvalidQuery
from moodboard.http_errors import BodyLimitMiddleware, install
from moodboard.round_picture_routes import router as round_picture_router
from moodboard.served_models import MIN_PREFIX
from moodboard.settings import Settings, get_settings

# /docs loads Swagger UI's script and stylesheet from here (files of the fastapi-offline wheel), never
# from a CDN, so the API documentation works offline and under `default-src 'self'`.
DOCS_ASSETS_URL = "/docs-assets"
# Swagger UI would otherwise ask validator.swagger.io to check the spec.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}
MAX_FORM_FIELDS = 30
MAX_FORM_FIELD_BYTES = 64 * 1024
DEFAULT_SIMILAR_K = 12

_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "image": {"type": "string", "format": "binary", "description": "the inspiration image"},
        **{name: {"type": "string"} for name in SearchRequest.model_fields
           if name not in ("image_url", "image_base64", "images", "less_like")},
    },
}
_SEARCH_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SearchRequest.model_json_schema()},
            "multipart/form-data": {"schema": _FORM_SCHEMA},
        },
    }
}

router = APIRouter()


def links_for(request: Request) -> search_service.Links:
    """Absolute links for this request's host and root path."""
    return search_service.Links(base_url=str(request.base_url))


@router.get("/health", tags=["meta"])
def health() -> HealthResponse:
    """Liveness: the process answers (loads nothing)."""
    return HealthResponse()


@router.get("/version", tags=["meta"])
def version(embedder: EmbedderDep, index: IndexDep, settings: SettingsDep) -> VersionResponse:
    """Code version, and the model and index versions and fingerprints being served."""
    return search_service.version_info(embedder, index, settings)


@router.get("/models", tags=["meta"])
def models(embedder: EmbedderDep, index: IndexDep, compared: ServedModelsDep) -> ModelsResponse:
    """The models served: the default one, then those served next to it for comparison (a search
    names one by `model`)."""
    return search_service.list_models(embedder, index, compared)


@router.get("/categories", tags=["search"])
def categories(index: IndexDep, settings: SettingsDep) -> CategoriesResponse:
    """Product types with their product counts (less those the catalog option hides)."""
    return search_service.list_categories(index, hidden=settings.hidden_categories)


@router.post("/search", tags=["search"], openapi_extra=_SEARCH_OPENAPI)
async def search(request: Request, settings: SettingsDep, embedder: EmbedderDep, index: IndexDep,
                 compared: ServedModelsDep, history: HistoryDep, fetcher: FetcherDep) -> SearchResponse:
    """Products with the gist of an image (URL, base64 or upload) within a product type, from the
    default model or the served model named by `model`."""
    body, upload = await read_search_request(request, settings)
    links = links_for(request)
    chosen = compared.pick(body.model, default=embedder.fingerprint, list_url=links.models)
    if chosen is not None:
        embedder, index = chosen.embedder, await run_in_threadpool(chosen.index.get)
        links = replace(links, model=chosen.fingerprint)
    return await run_in_threadpool(
        search_service.run_search, body, upload=upload, embedder=embedder, index=index, history=history,
        fetcher=fetcher, settings=settings, links=links,
    )


# The served model whose index a product route reads (as a search's `model`); default: the default model.
ModelQuery = Annotated[str | None, Query(min_length=MIN_PREFIX, max_length=128,
                                         description="a served model's fingerprint or unique prefix (see /models)")]


@router.get("/products/{product_id}", tags=["products"])
def product(product_id: str, index: IndexDep, compared: ServedModelsDep, request: Request,
            model: ModelQuery = None) -> ProductOut:
    """One product record, from the default model's index or that of the served model `model` names."""
    scope = search_service.product_scope(model, index, compared, links_for(request))
    return search_service.product_out(scope.index, product_id, scope.links)


@router.get("/products/{product_id}/similar", tags=["products"])
def similar(product_id: str, index: IndexDep, history: HistoryDep, embedder: EmbedderDep, settings: SettingsDep,
            compared: ServedModelsDep, request: Request, k: Annotated[int, Query(ge=1, le=MAX_K)] = DEFAULT_SIMILAR_K,
            category: Annotated[str | None, Query(max_length=200)] = None, model: ModelQuery = None) -> SimilarResponse:
    """More like this: the product and its nearest products, in its own category unless `category` is
    given, in the index of the served model `model` names (default: the default model's); recorded as a
    search (search_id) so the results can be rated."""
    scope = search_service.product_scope(model, index, compared, links_for(request))
    return search_service.similar_products(scope.index, product_id, k=k, category=category, links=scope.links,
                                           history=history, settings=settings,
                                           tiny=embedder.tiny if scope.tiny is None else scope.tiny)


@router.get("/products/{product_id}/image", tags=["products"], response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}, 307: {"description": "the product's image URL"}})
def product_image(product_id: str, index: IndexDep, compared: ServedModelsDep, request: Request,
                  model: ModelQuery = None) -> Response:
    """The product's image (the stored thumbnail, or a redirect to its URL), from the default model's
    index or that of the served model `model` names."""
    scope = search_service.product_scope(model, index, compared, links_for(request))
    kind, target = search_service.thumbnail(scope.index, product_id)
    if kind == "redirect":
        return RedirectResponse(target, status_code=307)
    return FileResponse(target, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=86400"})


# The upload of a round's picture is a team route of this function (it has the image decoder and the
# search's limits), declared on this router so infra_cdk.routes deploys it behind the authorizer.
router.routes.extend(round_picture_router.routes)


async def read_search_request(request: Request, settings: Settings) -> tuple[SearchRequest, bytes | None]:
    """Parse a JSON or multipart search request; an upload is read up to the image limit only."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type in ("application/json", "") or media_type.endswith("+json"):
        raw = await request.body()
        if not raw.strip():
            raise InvalidQuery("the request body is empty: send a JSON search query")
        try:
            data = json.loads(raw)
        except ValueError:
            raise RequestValidationError([{"loc": ("body",), "msg": "the body is not valid JSON",
                                           "type": "json_invalid"}]) from None
        return _validate(data), None
    if media_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FORM_FIELD_BYTES)
        fields: dict[str, Any] = {}
        upload: bytes | None = None
        for name, value in form.multi_items():
            if name == "image":
                if not isinstance(value, UploadFile):
                    raise InvalidQuery("`image` must be a file upload")
                upload = await value.read(settings.max_image_bytes + 1)
            elif isinstance(value, str) and value.strip():
                fields[name] = value
        await form.close()
        return _validate(fields), upload
    raise HTTPException(415, f"send the search as application/json or multipart/form-data, not {media_type}")


def _validate(data: Any) -> SearchRequest:
    if not isinstance(data, dict):
        raise RequestValidationError([{"loc": ("body",), "msg": "the body must be a JSON object",
                                       "type": "model_type"}])
    try:
        return SearchRequest.model_validate(data)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_input=False, include_url=False)]
        raise RequestValidationError(errors) from None


def app_settings(app: FastAPI) -> Settings:
    """The settings an app's routes see: its override of get_settings, if any, else the process's."""
    return app.dependency_overrides.get(get_settings, get_settings)()


def add_body_limit(app: FastAPI) -> None:
    """Refuse bodies over Settings.max_body_bytes (read per request, so overrides apply) with 413."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=lambda: app_settings(app).max_body_bytes)


def create_search_app(settings: Settings | None = None) -> FastAPI:
    """The search API as a FastAPI app: routes, the error mapping, the body limit, CORS if configured."""
    app = FastAPIOffline(title="moodboard search API", version=__version__,
                         description="Vibe search: products with the gist of an inspiration picture.",
                         redoc_url=None, static_url=DOCS_ASSETS_URL, swagger_ui_parameters=SWAGGER_UI_PARAMETERS)
    install(app)
    add_body_limit(app)
    origins = (settings or get_settings()).cors_origins
    if origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    app.include_router(router)
    return app
