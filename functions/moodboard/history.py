"""Search history in DynamoDB: one record per search, read back to check ratings and for admins.

The search API writes a record for every search (`HistoryStore.put`); the evaluations API reads it
to check that a rated product was among that search's results and to copy the model and index
versions onto the rating. Records expire through the table's TTL (`ttl`, epoch seconds), except the
searches an evaluation round's run names: registering the run removes their `ttl` (`HistoryStore.keep`),
so a round can be rated and reported for as long as it exists.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from moodboard.dynamo import Page, decode_cursor, deserialize, dynamo_errors, encode_cursor, serialize, utc_now
from moodboard.errors import NotFound
from moodboard.tables import HISTORY_FEED, HISTORY_RECENT_INDEX

DAY_SECONDS = 86_400
MAX_PAGE = 200
KEEP_WORKERS = 8
"""Concurrent UpdateItem calls of `HistoryStore.keep` (below botocore's pool of 10 connections)."""


class HistoryRecord(BaseModel):
    """One search as stored. `params` holds the query parameters, `weights` among them.

    `result_ids` are the ids returned by that response, in order; a result's rank is
    `params["offset"]` (0 when absent) plus its position, so rank 0 is the top result.
    `ttl` is None for a search kept for good (an evaluation round's run names it).
    Extra fields are kept (stored and returned) so the search API can record more context.
    """

    model_config = ConfigDict(extra="allow")

    search_id: str = Field(min_length=1)
    created_at: str
    kind: str
    category: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    result_ids: list[str] = Field(default_factory=list)
    model_fingerprint: str
    index_version: str
    ttl: int | None = None

    def rank_of(self, product_id: str) -> int | None:
        """The product's 0-based rank in this search, or None when it was not a result."""
        try:
            position = self.result_ids.index(product_id)
        except ValueError:
            return None
        return int(self.params.get("offset") or 0) + position

    def weights(self) -> dict[str, float]:
        """The query weights used: params["weights"], else the params named w_*."""
        weights = self.params.get("weights")
        if isinstance(weights, Mapping):
            return dict(weights)
        return {k: v for k, v in self.params.items() if k.startswith("w_")}


def make_history_record(
    *,
    kind: str,
    category: str | None,
    params: Mapping[str, Any],
    result_ids: Sequence[str],
    model_fingerprint: str,
    index_version: str,
    ttl_days: int,
    search_id: str | None = None,
    now: float | None = None,
    **extra: Any,
) -> HistoryRecord:
    """A new history record with a fresh search_id, the current time and a TTL `ttl_days` ahead."""
    epoch = time.time() if now is None else now
    return HistoryRecord(
        search_id=search_id or uuid.uuid4().hex,
        created_at=utc_now(epoch),
        kind=kind,
        category=category,
        params=dict(params),
        result_ids=list(result_ids),
        model_fingerprint=model_fingerprint,
        index_version=index_version,
        ttl=int(epoch) + ttl_days * DAY_SECONDS,
        **extra,
    )


class HistoryStore:
    """Repository of search history records (table pk `search_id`, GSI `recent` on feed/created_at)."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def put(self, record: HistoryRecord | Mapping[str, Any]) -> HistoryRecord:
        """Store one search (validated; floats become Decimal). Raises StoreError when DynamoDB fails."""
        record = record if isinstance(record, HistoryRecord) else HistoryRecord.model_validate(record)
        item = record.model_dump() | {"feed": HISTORY_FEED}
        with dynamo_errors("write search history"):
            self._client.put_item(TableName=self._table, Item=serialize(item))
        return record

    def get(self, search_id: str) -> HistoryRecord:
        """The record of one search; NotFound when it is unknown (or expired)."""
        with dynamo_errors("read search history"):
            response = self._client.get_item(
                TableName=self._table, Key={"search_id": {"S": search_id}}, ConsistentRead=True
            )
        if "Item" not in response:
            raise NotFound(f"search {search_id!r} not found", details={"search_id": search_id})
        return _record(response["Item"])

    def keep(self, search_ids: Iterable[str]) -> None:
        """Stop these searches from expiring: REMOVE each record's `ttl` (one conditional UpdateItem per
        search, KEEP_WORKERS at a time; DynamoDB has no batch update). NotFound when one is unknown (or
        has expired): the update never creates a record. Keeping a kept search again changes nothing."""
        ids = sorted(set(search_ids))
        if not ids:
            return
        with ThreadPoolExecutor(max_workers=min(KEEP_WORKERS, len(ids))) as pool:
            for _ in pool.map(self._keep_one, ids):
                pass

    def _keep_one(self, search_id: str) -> None:
        missing = NotFound(f"search {search_id!r} not found", details={"search_id": search_id})
        with dynamo_errors("keep a search in history", condition_failed=missing):
            self._client.update_item(
                TableName=self._table, Key={"search_id": {"S": search_id}},
                UpdateExpression="REMOVE #ttl", ConditionExpression="attribute_exists(search_id)",
                ExpressionAttributeNames={"#ttl": "ttl"})

    def recent(self, limit: int = 50, cursor: str | None = None) -> Page[HistoryRecord]:
        """Searches newest first, `limit` per page; pass the returned cursor for the next page."""
        args: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": HISTORY_RECENT_INDEX,
            "KeyConditionExpression": "feed = :feed",
            "ExpressionAttributeValues": {":feed": {"S": HISTORY_FEED}},
            "ScanIndexForward": False,
            "Limit": max(1, min(limit, MAX_PAGE)),
        }
        start = decode_cursor(cursor, {"search_id", "feed", "created_at"})
        if start:
            args["ExclusiveStartKey"] = start
        with dynamo_errors("list search history"):
            response = self._client.query(**args)
        return Page[HistoryRecord](
            items=[_record(item) for item in response.get("Items", [])],
            next_cursor=encode_cursor(response.get("LastEvaluatedKey")),
        )


def _record(item: Mapping[str, Any]) -> HistoryRecord:
    data = deserialize(item)
    data.pop("feed", None)
    return HistoryRecord.model_validate(data)
