"""The team's curated inspiration URLs for evaluation rounds, in DynamoDB (pk `id`)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from moodboard.dynamo import deserialize, dynamo_errors, serialize, utc_now
from moodboard.errors import NotFound

MAX_NOTE = 1000


class SearchUrlRequest(BaseModel):
    """An inspiration URL (an image or a page with og:image, e.g. a Pinterest pin) and its product type."""

    model_config = ConfigDict(extra="forbid")

    url: HttpUrl
    category: str = Field(min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=MAX_NOTE)


class SearchUrl(BaseModel):
    """One stored search URL."""

    id: str
    url: str
    category: str
    note: str | None = None
    created_at: str
    created_by: str | None = None


class SearchUrlStore:
    """Repository of curated search URLs; the list is small, so listing is a Scan sorted by time."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def add(self, request: SearchUrlRequest, *, created_by: str | None = None) -> SearchUrl:
        """Store a new URL under a fresh id."""
        entry = SearchUrl(
            id=uuid.uuid4().hex,
            url=str(request.url),
            category=request.category,
            note=request.note,
            created_at=utc_now(),
            created_by=created_by,
        )
        item = entry.model_dump(exclude_none=True)
        with dynamo_errors("store the search URL"):
            self._client.put_item(
                TableName=self._table, Item=serialize(item), ConditionExpression="attribute_not_exists(id)"
            )
        return entry

    def all(self) -> list[SearchUrl]:
        """Every stored URL, oldest first."""
        entries: list[SearchUrl] = []
        args: dict[str, Any] = {"TableName": self._table}
        while True:
            with dynamo_errors("list search URLs"):
                response = self._client.scan(**args)
            entries.extend(_entry(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return sorted(entries, key=lambda e: (e.created_at, e.id))
            args["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def delete(self, entry_id: str) -> None:
        """Remove one URL; NotFound when there is no such id."""
        with dynamo_errors("delete the search URL",
                           condition_failed=NotFound(f"search URL {entry_id!r} not found", details={"id": entry_id})):
            self._client.delete_item(
                TableName=self._table,
                Key={"id": {"S": entry_id}},
                ConditionExpression="attribute_exists(id)",
            )


def _entry(item: Mapping[str, Any]) -> SearchUrl:
    return SearchUrl.model_validate(deserialize(item))
