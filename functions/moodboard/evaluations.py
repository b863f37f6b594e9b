"""Evaluations (ratings of search results) in DynamoDB, one item per (search, product, rater).

The item key is (search_id, "<product_id>#<rater>"), so posting the same rating again is a keyed
upsert: one UpdateItem sets the new rating, score, comment and updated_at, keeps created_at and
counts revisions. That is why this does not use Powertools idempotency: a repeat must update the
stored rating, not replay the first response. Each item carries the model fingerprint, index
version, category, query weights and rank copied from the search history record, so summaries
never have to join tables.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from moodboard.dynamo import Page, decode_cursor, deserialize, dynamo_errors, encode_cursor, serialize, utc_now
from moodboard.errors import Conflict, NotFound
from moodboard.history import HistoryRecord

ANONYMOUS = "anonymous"
MAX_COMMENT = 1000
MAX_PAGE = 500
FILTERS = ("model_fingerprint", "index_version", "category")
SHOPPER_PREFIX = "shopper:"
"""Sort keys of shopper feedback carry this before the rater (team names may not start with it)."""


class EvaluationRequest(BaseModel):
    """A rating of one result of one search."""

    model_config = ConfigDict(extra="forbid")

    search_id: str = Field(min_length=1, max_length=128)
    product_id: str = Field(min_length=1, max_length=512)
    rating: Literal[1, -1] = Field(description="+1 good match, -1 bad match")
    score: int | None = Field(default=None, ge=1, le=5, description="optional 1-5 grade")
    comment: str | None = Field(default=None, max_length=MAX_COMMENT)
    rater: str | None = Field(
        default=None, min_length=1, max_length=128, description="ignored when the gateway authenticated the caller"
    )

    @field_validator("rating", mode="before")
    @classmethod
    def _rating_is_a_number(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("rating must be 1 or -1, not a boolean")
        return value


class EvaluationRecord(BaseModel):
    """One stored rating, with the search context copied from history."""

    search_id: str
    product_id: str
    rater: str
    rating: int
    score: int | None = None
    grade: int | None = None
    comment: str | None = None
    source: str = "shopper"
    created_at: str
    updated_at: str
    revisions: int = 1
    rank: int
    kind: str | None = None
    category: str | None = None
    model_fingerprint: str
    index_version: str
    weights: dict[str, float | None] = Field(default_factory=dict)


def rater_key(product_id: str, rater: str) -> str:
    """The sort key "<product_id>#<rater>"; '%' and '#' in the rater are escaped so keys never collide."""
    return f"{product_id}#{rater.replace('%', '%25').replace('#', '%23')}"


class EvaluationStore:
    """Repository of evaluations (table pk `search_id`, sk `product_rater`)."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def rate(
        self,
        search: HistoryRecord,
        *,
        product_id: str,
        rater: str,
        rating: int,
        score: int | None = None,
        comment: str | None = None,
        grade: int | None = None,
        source: str = "shopper",
    ) -> tuple[EvaluationRecord, bool]:
        """Create or update `rater`'s rating of `product_id` in `search`; returns (record, created).

        Raises Conflict when the product was not among that search's results. A repeat replaces
        rating, score and comment (an omitted score or comment is removed) and keeps created_at.
        """
        rank = search.rank_of(product_id)
        if rank is None:
            raise Conflict(
                f"product {product_id!r} was not a result of search {search.search_id!r}",
                details={"search_id": search.search_id, "product_id": product_id},
            )
        now = utc_now()
        values: dict[str, Any] = {
            "product_id": product_id,
            "rater": rater,
            "rating": rating,
            "score": score,
            "grade": grade,
            "source": source,
            "comment": comment,
            "updated_at": now,
            "rank": rank,
            "kind": search.kind,
            "category": search.category,
            "model_fingerprint": search.model_fingerprint,
            "index_version": search.index_version,
            "weights": search.weights(),
        }
        sets = {name: value for name, value in values.items() if value is not None}
        removes = [name for name, value in values.items() if value is None]
        names = {f"#a{i}": name for i, name in enumerate([*sets, *removes, "created_at", "revisions"])}
        alias = {name: key for key, name in names.items()}
        expression = "SET " + ", ".join(f"{alias[name]} = :{alias[name][1:]}" for name in sets)
        expression += f", {alias['created_at']} = if_not_exists({alias['created_at']}, :now)"
        if removes:
            expression += " REMOVE " + ", ".join(alias[name] for name in removes)
        expression += f" ADD {alias['revisions']} :one"
        attribute_values = serialize({f":{alias[name][1:]}": value for name, value in sets.items()})
        attribute_values |= serialize({":now": now, ":one": 1})
        with dynamo_errors("store the evaluation"):
            response = self._client.update_item(
                TableName=self._table,
                Key=self._key(search.search_id, product_id, rater, source),
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=attribute_values,
                ReturnValues="ALL_NEW",
            )
        record = _record(response["Attributes"])
        return record, record.revisions == 1

    def get(self, search_id: str, product_id: str, rater: str, source: str = "shopper") -> EvaluationRecord:
        """One stored rating; NotFound when there is none."""
        with dynamo_errors("read the evaluation"):
            response = self._client.get_item(
                TableName=self._table, Key=self._key(search_id, product_id, rater, source), ConsistentRead=True
            )
        if "Item" not in response:
            raise NotFound(
                "evaluation not found", details={"search_id": search_id, "product_id": product_id, "rater": rater}
            )
        return _record(response["Item"])

    def delete(self, search_id: str, product_id: str, rater: str, source: str = "shopper") -> None:
        """Remove one rating (a shopper clearing theirs); NotFound when there is none."""
        missing = NotFound("evaluation not found",
                           details={"search_id": search_id, "product_id": product_id, "rater": rater})
        with dynamo_errors("delete the evaluation", condition_failed=missing):
            self._client.delete_item(
                TableName=self._table,
                Key=self._key(search_id, product_id, rater, source),
                ConditionExpression="attribute_exists(search_id)",
            )

    def page(
        self,
        *,
        model_fingerprint: str | None = None,
        index_version: str | None = None,
        category: str | None = None,
        source: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[EvaluationRecord]:
        """Up to `limit` ratings matching the filters (a filtered Scan: the table is team-sized)."""
        limit = max(1, min(limit, MAX_PAGE))
        items: list[EvaluationRecord] = []
        start = decode_cursor(cursor, {"search_id", "product_rater"})
        filters = _filters(model_fingerprint=model_fingerprint, index_version=index_version, category=category,
                           source=source)
        while True:
            response = self._scan(filters, start, page_size=limit)
            for raw in response.get("Items", []):
                items.append(_record(raw))
                if len(items) == limit:
                    return Page[EvaluationRecord](items=items, next_cursor=encode_cursor(self._key_of(raw)))
            start = response.get("LastEvaluatedKey")
            if not start:
                return Page[EvaluationRecord](items=items)

    def scan(
        self,
        *,
        model_fingerprint: str | None = None,
        index_version: str | None = None,
        category: str | None = None,
        source: str | None = None,
    ) -> Iterator[EvaluationRecord]:
        """Every rating matching the filters, for summaries."""
        filters = _filters(model_fingerprint=model_fingerprint, index_version=index_version, category=category,
                           source=source)
        start: dict[str, Any] | None = None
        while True:
            response = self._scan(filters, start, page_size=1000)
            yield from (_record(raw) for raw in response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    def _scan(self, filters: Mapping[str, str], start: dict[str, Any] | None, *, page_size: int) -> dict[str, Any]:
        args: dict[str, Any] = {"TableName": self._table, "Limit": page_size}
        if filters:
            names = {f"#f{i}": name for i, name in enumerate(filters)}
            args["FilterExpression"] = " AND ".join(f"{key} = :{key[1:]}" for key in names)
            args["ExpressionAttributeNames"] = names
            args["ExpressionAttributeValues"] = {f":{key[1:]}": {"S": filters[name]} for key, name in names.items()}
        if start:
            args["ExclusiveStartKey"] = start
        with dynamo_errors("list evaluations"):
            return self._client.scan(**args)

    @staticmethod
    def _key(search_id: str, product_id: str, rater: str, source: str = "shopper") -> dict[str, Any]:
        # Team judgements and shopper feedback never share a key: a shopper naming themselves after a
        # team member writes beside that member's rating, never over it.
        rater = rater if source == "team" else f"{SHOPPER_PREFIX}{rater}"
        return {"search_id": {"S": search_id}, "product_rater": {"S": rater_key(product_id, rater)}}

    @staticmethod
    def _key_of(item: Mapping[str, Any]) -> dict[str, Any]:
        return {"search_id": item["search_id"], "product_rater": item["product_rater"]}


def _filters(**filters: str | None) -> dict[str, str]:
    return {name: value for name, value in filters.items() if value is not None}


def _record(item: Mapping[str, Any]) -> EvaluationRecord:
    data = deserialize(item)
    data.pop("product_rater", None)
    return EvaluationRecord.model_validate(data)
