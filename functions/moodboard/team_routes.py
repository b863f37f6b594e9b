"""Team routes: who I am, team judgements, evaluation rounds and index versions (docs/contracts.md).

Every route here needs a team credential (TeamDep: the Cognito JWT checked by API Gateway in AWS,
a named member's token or the admin token locally), so API Gateway puts them behind the authorizer;
the index versions are listed to every team member, while promoting one, a load's dry run and a
catalog upload need the admin role (AdminDep: 403 for a team member).
A team rating is always written under the caller's own name, taken from the credential; nothing
in a body names the rater, so nobody can rate, change or clear a rating as someone else.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from moodboard.archives import ArchiveLimits
from moodboard.auth import AdminDep, TeamDep, admin_action
from moodboard.catalog_diff import CatalogDiff, dry_run_in_bucket
from moodboard.catalog_uploads import CatalogUpload, CatalogUploadRequest, presign_upload
from moodboard.deps import EvaluationsDep, HistoryDep, RoundsDep, SearchUrlsDep, SettingsDep, VersionsDep
from moodboard.errors import NotFound
from moodboard.evaluations import MAX_COMMENT, EvaluationRecord
from moodboard.index_versions import VersionList
from moodboard.load_jobs import LoadRequest
from moodboard.round_pictures import picture_stored, read_picture
from moodboard.rounds import (
    Round,
    RoundRequest,
    RunRequest,
    round_from_request,
    round_queue,
    round_report,
    validate_run,
)

router = APIRouter()


class Me(BaseModel):
    name: str
    method: str
    role: Literal["member", "admin"] = Field(description="admin: may also promote index versions and load catalogs")


class TeamEvaluationRequest(BaseModel):
    """A team member's judgement of one result: thumbs, an optional 0-3 grade and comment."""

    model_config = ConfigDict(extra="forbid")

    search_id: str = Field(min_length=1, max_length=128)
    product_id: str = Field(min_length=1, max_length=512)
    rating: Literal[1, -1]
    grade: int | None = Field(default=None, ge=0, le=3, description="0 unrelated .. 3 exactly the gist")
    comment: str | None = Field(default=None, max_length=MAX_COMMENT)


class TeamEvaluationResponse(BaseModel):
    evaluation: EvaluationRecord
    created: bool


class RoundList(BaseModel):
    items: list[Round]


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expected_version: str | None = Field(default=None, description="CURRENT as the admin saw it (409 if it moved)")


class Promoted(BaseModel):
    version: str
    previous: str | None


@router.get("/team/me", response_model=Me, tags=["team"])
def team_me(me: TeamDep) -> Me:
    """Who the credential says the caller is (the name ratings are stored under) and their role."""
    return Me(name=me.subject, method=me.method, role=me.role)


@router.post("/team/evaluations", response_model=TeamEvaluationResponse, tags=["team"])
def post_team_evaluation(body: TeamEvaluationRequest, me: TeamDep, history: HistoryDep,
                         evaluations: EvaluationsDep) -> TeamEvaluationResponse:
    """Rate one result as yourself (+1/-1, optional 0-3 grade and comment); a repeat changes it."""
    search = history.get(body.search_id)
    record, created = evaluations.rate(search, product_id=body.product_id, rater=me.subject, rating=body.rating,
                                       grade=body.grade, comment=body.comment, source="team")
    return TeamEvaluationResponse(evaluation=record, created=created)


@router.delete("/team/evaluations/{search_id}/{product_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["team"])
def delete_team_evaluation(search_id: str, product_id: str, me: TeamDep,
                           evaluations: EvaluationsDep) -> Response:
    """Clear your own rating of one result; 404 when you have none."""
    evaluations.delete(search_id, product_id, me.subject, source="team")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/rounds", response_model=RoundList, tags=["team"])
def list_rounds(_: TeamDep, rounds: RoundsDep) -> RoundList:
    """Evaluation rounds, newest first."""
    return RoundList(items=rounds.all())


@router.post("/rounds", response_model=Round, status_code=status.HTTP_201_CREATED, tags=["team"])
def create_round(body: RoundRequest, me: TeamDep, rounds: RoundsDep, search_urls: SearchUrlsDep,
                 versions: VersionsDep) -> Round:
    """A new round from pictures (image URLs or uploaded pictures) and/or curated search URLs, each
    with its product type; 404 for an uploaded picture that is not stored."""
    urls = {entry.id: entry for entry in search_urls.all()}
    bucket = versions.store
    return rounds.create(round_from_request(body, created_by=me.subject, urls=urls,
                                            picture_stored=lambda name: picture_stored(bucket.client, bucket.bucket,
                                                                                       name)))


@router.get("/rounds/{round_id}", response_model=Round, tags=["team"])
def get_round(round_id: str, request: Request, _: TeamDep, rounds: RoundsDep) -> Round:
    """One round with its items and runs; 404 with the list URL when unknown."""
    return rounds.get(round_id, list_url=str(request.url_for("list_rounds")))


@router.get("/rounds/{round_id}/items/{item_id}/picture", tags=["team"], response_class=Response,
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}})
def get_round_picture(round_id: str, item_id: str, request: Request, _: TeamDep, rounds: RoundsDep,
                      versions: VersionsDep) -> Response:
    """An item's uploaded picture (the bytes the team page sends to /search to run it); 404 for an
    unknown round (with the list URL), item, or an item with an image URL instead."""
    current = rounds.get(round_id, list_url=str(request.url_for("list_rounds")))
    item = next((item for item in current.items if item.item_id == item_id), None)
    if item is None or item.picture is None:
        raise NotFound(f"round {round_id} has no item {item_id!r} with an uploaded picture",
                       details={"round_id": round_id, "item_id": item_id,
                                "round_url": str(request.url_for("get_round", round_id=round_id))})
    data, media_type = read_picture(versions.store.client, versions.store.bucket, item.picture)
    # A picture never changes (its name is its sha256): the browser may keep it.
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=86400, immutable"})


@router.post("/rounds/{round_id}/runs", response_model=Round, tags=["team"])
def add_run(round_id: str, body: RunRequest, request: Request, me: TeamDep, rounds: RoundsDep,
            history: HistoryDep) -> Round:
    """Register a run: the search (made through /search) answering each item; one configuration.
    Its searches stop expiring from history (kept before the run is stored, so a stored run never
    names a search that can expire; a refused add_run only leaves those searches kept)."""
    current = rounds.get(round_id, list_url=str(request.url_for("list_rounds")))
    searches = {sid: history.get(sid) for sid in set(body.searches.values())}
    run = validate_run(current, body, searches, created_by=me.subject)
    history.keep(searches)
    return rounds.add_run(round_id, run, runs_before=len(current.runs))


@router.get("/rounds/{round_id}/report", tags=["team"])
def get_round_report(round_id: str, request: Request, _: TeamDep, rounds: RoundsDep,
                     evaluations: EvaluationsDep) -> dict:
    """Each rater's progress, P@k and nDCG@k with intervals per run, the paired comparison, kappa."""
    current = rounds.get(round_id, list_url=str(request.url_for("list_rounds")))
    searches = {sid for run in current.runs for sid in run.searches.values()}
    ratings = [r for r in evaluations.scan(source="team") if r.search_id in searches] if searches else []
    return round_report(current, ratings)


@router.get("/rounds/{round_id}/queue", tags=["team"])
def get_round_queue(round_id: str, request: Request, me: TeamDep, rounds: RoundsDep, history: HistoryDep,
                    evaluations: EvaluationsDep) -> dict:
    """What the caller rates in a round: per run, each item's search and its top k result ids, with
    the caller's own ratings of them so far."""
    current = rounds.get(round_id, list_url=str(request.url_for("list_rounds")))
    return round_queue(current, history, evaluations, rater=me.subject)


@router.get("/admin/indexes", response_model=VersionList, tags=["admin"])
def list_indexes(_: TeamDep, versions: VersionsDep, settings: SettingsDep) -> VersionList:
    """Published index versions, newest first: created, catalog key, products, categories, model."""
    return versions.list(keep=settings.index_keep_versions, keep_days=settings.index_keep_days)


@router.post("/admin/indexes/{version}/promote", response_model=Promoted, tags=["admin"],
             openapi_extra=admin_action("promoting an index version"))
def promote_index(version: str, body: PromoteRequest, request: Request, _: AdminDep,
                  versions: VersionsDep) -> Promoted:
    """Make a listed version CURRENT (rollback); 409 for another model or when CURRENT moved first."""
    pointer = versions.promote(version, expected_version=body.expected_version,
                               list_url=str(request.url_for("list_indexes")))
    return Promoted(version=pointer.version, previous=pointer.previous)


@router.post("/admin/load/dry-run", response_model=CatalogDiff, tags=["admin"],
             openapi_extra=admin_action("a catalog load's dry run"))
def dry_run_load(body: LoadRequest, _: AdminDep, versions: VersionsDep, settings: SettingsDep) -> CatalogDiff:
    """What loading a catalog already in the bucket (CSV, JSONL or an archive) would change against
    CURRENT (products added, removed, changed; categories gained and lost; rejected rows; whether it
    needs confirmation). Publishes nothing."""
    return dry_run_in_bucket(versions.store, body.catalog_key, max_removed_share=settings.load_confirm_removed_share,
                             limits=ArchiveLimits.from_settings(settings), cache_dir=settings.cache_dir)


@router.post("/admin/catalog-uploads", response_model=CatalogUpload, tags=["admin"],
             openapi_extra=admin_action("uploading a catalog"))
def create_catalog_upload(body: CatalogUploadRequest, _: AdminDep, versions: VersionsDep,
                          settings: SettingsDep) -> CatalogUpload:
    """A presigned S3 POST for one catalog file (.csv, .jsonl, .ndjson or an archive) under
    uploads/catalogs/, which the S3 trigger does not watch: dry-run it, then load it. 422 for another
    kind of file, 413 over Settings.catalog_upload_max_bytes."""
    return presign_upload(versions.store.client, versions.store.bucket, body,
                          max_bytes=settings.catalog_upload_max_bytes)
