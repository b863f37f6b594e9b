"""The evaluations API's routes (docs/contracts.md, "HTTP API"): ratings, admin reads, search URLs and
loads, and the app factory that wires them (with the team routes of moodboard.team_routes).

Light on purpose: no onnxruntime, numpy, hnswlib or Pillow, so the evaluations Lambda's cold start
stays cheap. The Lambda module (functions/evaluations/app.py) builds the app and wraps it in Mangum;
`moodboard serve` adds `router` to the search app with `mount`. Settings, the repositories and the
load runner come from moodboard.deps (shared with the search and team routes); tests and `serve`
swap any of them with `app.dependency_overrides`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Query, Request, Response, status
from pydantic import BaseModel

from moodboard import __version__
from moodboard.auth import AdminDep, TeamDep, admin_action, gateway_subject
from moodboard.deps import (
    EvaluationsDep,
    HistoryDep,
    JobsDep,
    LoadRunnerDep,
    SearchUrlsDep,
    SettingsDep,
    get_load_runner,
)
from moodboard.dynamo import Page
from moodboard.errors import MoodboardError
from moodboard.evaluation_summary import Summary, summarize
from moodboard.evaluations import ANONYMOUS, EvaluationRecord, EvaluationRequest
from moodboard.history import HistoryRecord
from moodboard.http_errors import BodyLimitMiddleware, install
from moodboard.load_jobs import JobRecord, LoadRequest, LoadRunner
from moodboard.search_urls import SearchUrl, SearchUrlRequest
from moodboard.team_routes import router as team_router

MAX_BODY_BYTES = 64 * 1024


class EvaluationResponse(BaseModel):
    evaluation: EvaluationRecord
    created: bool


class SearchUrlList(BaseModel):
    items: list[SearchUrl]


class LoadStarted(BaseModel):
    job_id: str


router = APIRouter()


@router.post("/evaluations", response_model=EvaluationResponse, tags=["evaluations"])
def post_evaluation(
    body: EvaluationRequest, request: Request, settings: SettingsDep, history: HistoryDep, evaluations: EvaluationsDep
) -> EvaluationResponse:
    """Rate one result of a search (+1/-1, optional 1-5 score and comment); a repeat updates it."""
    search = history.get(body.search_id)
    rater = gateway_subject(request, settings) or body.rater or ANONYMOUS
    record, created = evaluations.rate(
        search, product_id=body.product_id, rater=rater, rating=body.rating, score=body.score, comment=body.comment
    )
    return EvaluationResponse(evaluation=record, created=created)


@router.delete("/evaluations/{search_id}/{product_id}", status_code=status.HTTP_204_NO_CONTENT,
               tags=["evaluations"])
def delete_evaluation(
    search_id: str,
    product_id: str,
    request: Request,
    settings: SettingsDep,
    evaluations: EvaluationsDep,
    rater: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> Response:
    """Clear one's rating of one result (the rater as for POST); 404 when there is none."""
    evaluations.delete(search_id, product_id, gateway_subject(request, settings) or rater or ANONYMOUS)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/evaluations", response_model=Page[EvaluationRecord], tags=["admin"])
def list_evaluations(
    _: TeamDep,
    evaluations: EvaluationsDep,
    model_fingerprint: str | None = None,
    index_version: str | None = None,
    category: str | None = None,
    source: Literal["team", "shopper"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> Page[EvaluationRecord]:
    """Ratings, optionally of one model, index version, category or source (team / shopper); pass next_cursor for more."""
    return evaluations.page(
        model_fingerprint=model_fingerprint, index_version=index_version, category=category, source=source,
        limit=limit, cursor=cursor
    )


@router.get("/evaluations/summary", response_model=Summary, tags=["admin"])
def evaluations_summary(
    _: TeamDep,
    evaluations: EvaluationsDep,
    model_fingerprint: str | None = None,
    index_version: str | None = None,
    category: str | None = None,
    source: Literal["team", "shopper", "all"] = "team",
) -> Summary:
    """precision@5/@10 and rating counts, overall and by model, index version, category and weights;
    team judgements unless `source` asks for shopper feedback or all."""
    return summarize(
        evaluations.scan(model_fingerprint=model_fingerprint, index_version=index_version, category=category,
                         source=None if source == "all" else source)
    )


@router.get("/history", response_model=Page[HistoryRecord], tags=["admin"])
def recent_history(
    _: TeamDep,
    history: HistoryDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> Page[HistoryRecord]:
    """Recent searches, newest first."""
    return history.recent(limit=limit, cursor=cursor)


@router.get("/search-urls", response_model=SearchUrlList, tags=["admin"])
def list_search_urls(_: TeamDep, urls: SearchUrlsDep) -> SearchUrlList:
    """The team's curated inspiration URLs, oldest first."""
    return SearchUrlList(items=urls.all())


@router.post("/search-urls", response_model=SearchUrl, status_code=status.HTTP_201_CREATED, tags=["admin"])
def add_search_url(body: SearchUrlRequest, me: TeamDep, urls: SearchUrlsDep) -> SearchUrl:
    """Add an inspiration URL with its product type."""
    return urls.add(body, created_by=me.subject)


@router.delete("/search-urls/{entry_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["admin"])
def delete_search_url(entry_id: str, _: TeamDep, urls: SearchUrlsDep) -> Response:
    """Remove an inspiration URL."""
    urls.delete(entry_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/admin/load", response_model=LoadStarted, status_code=status.HTTP_202_ACCEPTED, tags=["admin"],
             openapi_extra=admin_action("loading a catalog"))
def start_load(body: LoadRequest, _: AdminDep, jobs: JobsDep, runner: LoadRunnerDep) -> LoadStarted:
    """Build and publish an index from a catalog in the artifacts bucket; poll the job for progress."""
    job = jobs.create(body.catalog_key, confirm=body.confirm)
    try:
        runner.start(job.job_id, job.catalog_key)
    except MoodboardError as exc:
        jobs.update(job.job_id, status="failed", error=exc.message)
        raise
    return LoadStarted(job_id=job.job_id)


@router.get("/admin/load/{job_id}", response_model=JobRecord, tags=["admin"],
            openapi_extra=admin_action("following a catalog load"))
def load_status(job_id: str, _: AdminDep, jobs: JobsDep) -> JobRecord:
    """A load job's status, progress, rejects and error."""
    return jobs.get(job_id)


# Team judgements, rounds and index versions (moodboard.team_routes) are routes of this API, declared
# on this router itself (infra_cdk.routes derives the deployed routes from its APIRoutes).
router.routes.extend(team_router.routes)


def mount(app: FastAPI, *, load_runner: LoadRunner | None = None) -> None:
    """Add these routes to another app (the one-port `moodboard serve`), with its load runner."""
    app.include_router(router)
    if load_runner is not None:
        app.dependency_overrides[get_load_runner] = lambda: load_runner


def create_evaluations_app() -> FastAPI:
    """The evaluations API as a FastAPI app: routes, the error mapping and the body limit."""
    app = FastAPI(
        title="moodboard evaluations",
        version=__version__,
        description="Ratings of search results, admin reads, curated search URLs and catalog loads.",
    )
    install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    app.include_router(router)
    return app
