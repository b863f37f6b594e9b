"""The DynamoDB tables: their key schemas and their creation.

The key schemas here are the contract with the CDK stack (docs/contracts.md, "DynamoDB"):
`create_tables` builds the same tables in moto for tests and for `moodboard serve`. The item codec
the repositories share is in moodboard.dynamo.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from moodboard.settings import Settings

logger = logging.getLogger(__name__)

HISTORY_RECENT_INDEX = "recent"
HISTORY_FEED = "search"
"""Constant partition of the history table's `recent` index: one feed, newest first.

A single GSI partition holds every search; at a team tool's volume (far below 1,000 writes/s)
that is simpler than day buckets and still lets `recent` be one Query."""


@dataclass(frozen=True)
class TableSpec:
    """One table's name attribute in Settings and its key schema (string keys only)."""

    settings_field: str
    partition_key: str
    sort_key: str | None = None
    ttl_attribute: str | None = None
    # name -> (partition key, sort key); every GSI projects all attributes.
    indexes: dict[str, tuple[str, str]] = field(default_factory=dict)


TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "history_table",
        "search_id",
        ttl_attribute="ttl",
        indexes={HISTORY_RECENT_INDEX: ("feed", "created_at")},
    ),
    TableSpec("evaluations_table", "search_id", sort_key="product_rater"),
    TableSpec("search_urls_table", "id"),
    TableSpec("jobs_table", "job_id"),
    TableSpec("rounds_table", "round_id"),
)


def create_tables(dynamodb: Any, settings: Settings) -> list[str]:
    """Create every moodboard table that does not exist yet; returns the names created.

    `dynamodb` is a boto3 DynamoDB client or service resource (moto in tests, the embedded moto
    server under `moodboard serve`). Tables are on-demand; the history table gets its TTL.
    """
    client = getattr(getattr(dynamodb, "meta", None), "client", dynamodb)
    existing = set(client.list_tables().get("TableNames", []))
    created = []
    for spec in TABLES:
        name = getattr(settings, spec.settings_field)
        if name in existing:
            continue
        client.create_table(**_create_table_args(name, spec))
        client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        if spec.ttl_attribute:
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute},
            )
        created.append(name)
        logger.info("created DynamoDB table %s", name)
    return created


def _create_table_args(name: str, spec: TableSpec) -> dict[str, Any]:
    keys = [(spec.partition_key, "HASH")] + ([(spec.sort_key, "RANGE")] if spec.sort_key else [])
    attributes = {key for key, _ in keys} | {a for pair in spec.indexes.values() for a in pair}
    args: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": key, "KeyType": kind} for key, kind in keys],
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in sorted(attributes)],
    }
    if spec.indexes:
        args["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index,
                "KeySchema": [{"AttributeName": pk, "KeyType": "HASH"}, {"AttributeName": sk, "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index, (pk, sk) in spec.indexes.items()
        ]
    return args
