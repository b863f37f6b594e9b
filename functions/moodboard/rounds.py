"""Evaluation rounds: a named set of inspiration pictures, each with a product type, run against
configurations (model, index version, query weights) and rated by named team members.

A round is one DynamoDB item (pk `round_id`): its items and its runs. A *run* is the round searched
once under one configuration: the team page runs each item's search through the ordinary search
API (so history records it, with the model, index version and weights that answered) and then
registers the search ids here; `validate_run` checks that every item has a search of its product
type and that all of them were answered by the same configuration. Ratings are ordinary team
evaluations of those searches, so nothing about rating changes: a round is the frame that ties
searches to pictures, which is what lets two runs be compared picture by picture (a paired test).

`round_report` gives, per run, each rater's progress, precision@k and nDCG@k with intervals, the
paired comparison of every later run with the first, and inter-rater agreement (moodboard.measures,
moodboard.agreement).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from moodboard.agreement import agreement
from moodboard.catalog import is_url
from moodboard.dynamo import deserialize, dynamo_errors, serialize, utc_now
from moodboard.errors import Conflict, NotFound
from moodboard.history import HistoryRecord
from moodboard.index_versions import model_label
from moodboard.measures import DEFAULT_KS, Judged, configuration_metrics, paired_comparison, per_search
from moodboard.round_pictures import NAME_PATTERN, UPLOAD_PATH, UnknownPicture, sha256_of

MAX_ITEMS = 200
MAX_RUNS = 20
ROUND_K = 10


class UnknownRound(NotFound):
    """No evaluation round has that id."""


class RoundItem(BaseModel):
    """One inspiration picture of a round and the product type searched for it: an image URL, or an
    uploaded picture stored in the bucket (moodboard.round_pictures), exactly one of the two."""

    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12], min_length=1, max_length=64)
    image_url: str | None = Field(default=None, min_length=1, max_length=2048)
    picture: str | None = Field(default=None, pattern=NAME_PATTERN,
                                description=f"an uploaded picture's name (<sha256>.<ext>, from POST {UPLOAD_PATH})")
    category: str = Field(min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=500)

    @field_validator("image_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value is not None and not is_url(value):
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _one_picture(self) -> RoundItem:
        if (self.image_url is None) == (self.picture is None):
            raise ValueError("give the item either an image_url or an uploaded picture, exactly one")
        return self


class RoundRequest(BaseModel):
    """Create a round from pictures and/or curated search URLs (by id)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    items: list[RoundItem] = Field(default_factory=list, max_length=MAX_ITEMS)
    search_url_ids: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    k: int = Field(default=ROUND_K, ge=1, le=50, description="results rated per search")


class RunRequest(BaseModel):
    """Register a run: the search id answering each item of the round."""

    model_config = ConfigDict(extra="forbid")

    searches: dict[str, str] = Field(min_length=1, max_length=MAX_ITEMS, description="item_id -> search_id")
    model_source: str | None = Field(default=None, max_length=300, description="the model's source, for its name")


class RoundRun(BaseModel):
    """The round searched once under one configuration."""

    run_id: str
    label: str
    model: str
    model_fingerprint: str
    index_version: str
    weights: dict[str, float | None] = Field(default_factory=dict)
    searches: dict[str, str]
    result_counts: dict[str, int] = Field(default_factory=dict)
    created_at: str
    created_by: str


class Round(BaseModel):
    """A round as stored and returned."""

    round_id: str
    name: str
    k: int = ROUND_K
    items: list[RoundItem]
    runs: list[RoundRun] = Field(default_factory=list)
    created_at: str
    created_by: str


def round_from_request(request: RoundRequest, *, created_by: str, urls: Mapping[str, Any],
                       picture_stored: Callable[[str], bool] | None = None) -> Round:
    """A new round; `urls` maps the curated search URL ids to their entries (url, category, note) and
    `picture_stored` says whether an uploaded picture is in the bucket (UnknownPicture, 404, if not)."""
    items = list(request.items)
    for item in items:
        if item.picture is not None and (picture_stored is None or not picture_stored(item.picture)):
            raise UnknownPicture(f"no uploaded picture {item.picture!r}; upload it first (POST {UPLOAD_PATH})",
                                 details={"picture": item.picture, "upload_url": UPLOAD_PATH})
    for entry_id in request.search_url_ids:
        entry = urls.get(entry_id)
        if entry is None:
            raise NotFound(f"no curated search URL {entry_id!r}", details={"list_url": "/search-urls"})
        items.append(RoundItem(image_url=entry.url, category=entry.category, note=entry.note))
    if not items:
        raise Conflict("a round needs at least one picture (items or search_url_ids)")
    if len(items) > MAX_ITEMS:
        raise Conflict(f"a round holds at most {MAX_ITEMS} pictures")
    if len({i.item_id for i in items}) != len(items):
        raise Conflict("item ids of a round must be unique")
    return Round(round_id=uuid.uuid4().hex[:16], name=request.name, k=request.k, items=items,
                 created_at=utc_now(), created_by=created_by)


def validate_run(round_: Round, request: RunRequest, searches: Mapping[str, HistoryRecord], *,
                 created_by: str) -> RoundRun:
    """A run from the searches answering the round's items; Conflict (409) when an item has no
    search, a search is of another product type, or the searches were answered by different
    configurations."""
    if len(round_.runs) >= MAX_RUNS:
        raise Conflict(f"a round holds at most {MAX_RUNS} runs")
    items = {item.item_id: item for item in round_.items}
    unknown = sorted(set(request.searches) - set(items))
    missing = sorted(set(items) - set(request.searches))
    if unknown or missing:
        raise Conflict("a run needs exactly one search per item of the round",
                       details={"unknown_items": unknown, "missing_items": missing})
    configs = set()
    for item_id, search_id in request.searches.items():
        search = searches[search_id]
        if (search.category or "").casefold() != items[item_id].category.casefold():
            raise Conflict(f"search {search_id} was for {search.category!r}, item {item_id} asks for "
                           f"{items[item_id].category!r}", details={"item_id": item_id, "search_id": search_id})
        picture = items[item_id].picture
        if picture is not None and search.params.get("image_sha256") != sha256_of(picture):
            raise Conflict(f"search {search_id} was not made from item {item_id}'s uploaded picture",
                           details={"item_id": item_id, "search_id": search_id, "picture": picture})
        configs.add((search.model_fingerprint, search.index_version, tuple(sorted(search.weights().items()))))
    if len(configs) != 1:
        raise Conflict("the searches of one run must share one configuration (model, index version, weights)")
    fingerprint, version, weights = configs.pop()
    model = model_label(request.model_source, fingerprint)
    return RoundRun(run_id=uuid.uuid4().hex[:12], label=f"{model} · index {version}", model=model,
                    model_fingerprint=fingerprint, index_version=version, weights=dict(weights),
                    searches=dict(request.searches),
                    result_counts={sid: len(searches[sid].result_ids) for sid in request.searches.values()},
                    created_at=utc_now(), created_by=created_by)


class RoundStore:
    """Repository of rounds (table pk `round_id`)."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def create(self, round_: Round) -> Round:
        """Store a new round."""
        with dynamo_errors("create the round"):
            self._client.put_item(TableName=self._table, Item=serialize(round_.model_dump(exclude_none=True)),
                                  ConditionExpression="attribute_not_exists(round_id)")
        return round_

    def get(self, round_id: str, *, list_url: str | None = None) -> Round:
        """One round; UnknownRound (404, with the list URL) when there is none."""
        with dynamo_errors("read the round"):
            response = self._client.get_item(TableName=self._table, Key={"round_id": {"S": round_id}},
                                             ConsistentRead=True)
        if "Item" not in response:
            raise UnknownRound(f"no evaluation round {round_id!r}; see the list at {list_url or '/rounds'}",
                               details={"round_id": round_id, "list_url": list_url or "/rounds"})
        return Round.model_validate(deserialize(response["Item"]))

    def all(self) -> list[Round]:
        """Every round, newest first."""
        items: list[Round] = []
        start: dict[str, Any] | None = None
        while True:
            args: dict[str, Any] = {"TableName": self._table}
            if start:
                args["ExclusiveStartKey"] = start
            with dynamo_errors("list rounds"):
                response = self._client.scan(**args)
            items += [Round.model_validate(deserialize(raw)) for raw in response.get("Items", [])]
            start = response.get("LastEvaluatedKey")
            if not start:
                return sorted(items, key=lambda r: r.created_at, reverse=True)

    def add_run(self, round_id: str, run: RoundRun, *, runs_before: int) -> Round:
        """Append a run, if the round still has `runs_before` runs (else Conflict: someone added one
        meanwhile; reload and try again)."""
        with dynamo_errors("add the run",
                           condition_failed=Conflict("the round changed meanwhile (another run was added); reload it")):
            response = self._client.update_item(
                TableName=self._table, Key={"round_id": {"S": round_id}},
                UpdateExpression="SET #runs = list_append(#runs, :run)",
                ConditionExpression="attribute_exists(round_id) AND size(#runs) = :n",
                ExpressionAttributeNames={"#runs": "runs"},
                ExpressionAttributeValues=serialize({":run": [run.model_dump()], ":n": runs_before}),
                ReturnValues="ALL_NEW")
        return Round.model_validate(deserialize(response["Attributes"]))

    def delete(self, round_id: str) -> None:
        """Remove a round (its searches and ratings stay); UnknownRound when there is none."""
        missing = UnknownRound(f"no evaluation round {round_id!r}",
                               details={"round_id": round_id, "list_url": "/rounds"})
        with dynamo_errors("delete the round", condition_failed=missing):
            self._client.delete_item(TableName=self._table, Key={"round_id": {"S": round_id}},
                                     ConditionExpression="attribute_exists(round_id)")


def _plain(value: Any) -> Any:
    """Dataclasses (Estimate, Kappa, Paired) -> dicts, for JSON."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def round_report(round_: Round, ratings: Iterable[Judged], *, ks: Sequence[int] = DEFAULT_KS,
                 raters: Sequence[str] = ()) -> dict[str, Any]:
    """Progress, measures, comparison and agreement of a round from its team ratings."""
    run_of: dict[str, tuple[RoundRun, str]] = {}
    for run in round_.runs:
        for item_id, search_id in run.searches.items():
            run_of[search_id] = (run, item_id)
    by_run: dict[str, list[Judged]] = defaultdict(list)
    kept: list[Judged] = []
    for rating in ratings:
        found = run_of.get(rating.search_id)
        if found is None or rating.rank >= round_.k:
            continue
        by_run[found[0].run_id].append(rating)
        kept.append(rating)
    everyone = sorted(set(raters) | {r.rater for r in kept})
    item_of = {search_id: item_id for search_id, (_, item_id) in run_of.items()}

    def item_key(rating: Judged) -> str:
        return item_of[rating.search_id]

    runs = []
    for run in round_.runs:
        mine = by_run.get(run.run_id, [])
        total = sum(min(round_.k, run.result_counts.get(sid, round_.k)) for sid in run.searches.values())
        done: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for rating in mine:
            done[rating.rater].add((rating.search_id, rating.product_id))
        progress = [{"rater": name, "rated": len(done.get(name, ())), "total": total} for name in everyone]
        runs.append({"run_id": run.run_id, "label": run.label, "model": run.model,
                     "model_fingerprint": run.model_fingerprint, "index_version": run.index_version,
                     "weights": run.weights, "progress": progress,
                     "metrics": _plain(configuration_metrics(mine, ks, key=item_key))})
    comparisons = []
    k = max(ks)
    if len(round_.runs) >= 2:
        first = round_.runs[0]
        for other in round_.runs[1:]:
            entry: dict[str, Any] = {"a": other.run_id, "b": first.run_id, "a_label": other.label,
                                     "b_label": first.label, "k": k}
            for metric in ("precision", "ndcg"):
                a = per_search(by_run.get(other.run_id, []), k, metric, item_key)
                b = per_search(by_run.get(first.run_id, []), k, metric, item_key)
                entry[metric] = _plain(paired_comparison(a, b))
            comparisons.append(entry)
    return {"round_id": round_.round_id, "k": round_.k, "ks": list(ks), "raters": everyone, "runs": runs,
            "comparisons": comparisons, "agreement": _plain(agreement(kept)),
            "agreement_grades": _plain(agreement(kept, label="grade"))}


def round_queue(round_: Round, history: Any, evaluations: Any, *, rater: str) -> dict[str, Any]:
    """The rating queue of one rater: per run (with the fingerprint of the model that answered it, the
    `model` its results' product routes need when a compared model did), each item with its search id,
    the top `k` result ids and the rater's own team ratings of them ({product_id: {rating, grade, comment}})."""
    searches = {sid for run in round_.runs for sid in run.searches.values()}
    mine: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    if searches:
        for rating in evaluations.scan(source="team"):
            if rating.rater == rater and rating.search_id in searches:
                mine[rating.search_id][rating.product_id] = {"rating": rating.rating, "grade": rating.grade,
                                                             "comment": rating.comment}
    items = {item.item_id: item for item in round_.items}
    runs = []
    for run in round_.runs:
        entries = []
        for item_id, search_id in run.searches.items():
            item = items.get(item_id)
            if item is None:
                continue
            record = history.get(search_id)
            entries.append({"item_id": item_id, "image_url": item.image_url, "picture": item.picture,
                            "category": item.category,
                            "note": item.note, "search_id": search_id,
                            "result_ids": record.result_ids[:round_.k], "mine": mine.get(search_id, {})})
        runs.append({"run_id": run.run_id, "label": run.label, "model": run.model,
                     "model_fingerprint": run.model_fingerprint, "items": entries})
    return {"round_id": round_.round_id, "name": round_.name, "k": round_.k, "rater": rater, "runs": runs}
