"""What the DynamoDB repositories share: the item codec, cursors and pages, timestamps, and the one
mapping of DynamoDB's errors to domain errors. The tables themselves are in moodboard.tables.

Repositories talk to the low-level boto3 client, so items go through boto3's TypeSerializer;
DynamoDB has no float type, so floats become Decimal on the way in and numbers come back as
int or float on the way out. DynamoDB numbers stop at magnitudes of 1E-130 and 1E+126 (38 digits):
a float closer to zero than that is stored as 0, as it would underflow in DynamoDB's own arithmetic
(any weight or threshold that small acts as 0 anyway), so a legal request's record is never lost to
the codec; a float beyond the largest is refused with StoreError.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from pydantic import BaseModel

from moodboard.aws import aws_errors
from moodboard.errors import InvalidCursor, MoodboardError, StoreError
from moodboard.json_limits import too_deep

T = TypeVar("T")

CONDITION_FAILED = "ConditionalCheckFailedException"
CURSOR_DEPTH = 2
"""A cursor is {"<key attribute>": {"S": "<value>"}, ...}: two levels of objects."""
DYNAMO_MIN_NUMBER = Decimal("1E-130")
DYNAMO_MAX_NUMBER = Decimal("9.9999999999999999999999999999999999999E+125")

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def utc_now(epoch: float | None = None) -> str:
    """`epoch` (default: now) as ISO 8601 UTC with milliseconds and a Z, so strings sort by time."""
    moment = datetime.now(UTC) if epoch is None else datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_dynamo(value: Any) -> Any:
    """Python value -> DynamoDB-safe value: floats to Decimal, recursively; floats below DynamoDB's
    smallest magnitude (1E-130) become 0; non-finite floats and ones over its largest are refused."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StoreError(f"cannot store the non-finite number {value!r}")
        number = Decimal(repr(value))
        if abs(number) < DYNAMO_MIN_NUMBER:
            return Decimal(0)
        if abs(number) > DYNAMO_MAX_NUMBER:
            raise StoreError(f"cannot store {value!r}: DynamoDB numbers stop below 1E+126")
        return number
    if isinstance(value, Mapping):
        return {str(k): to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any) -> Any:
    """DynamoDB value -> plain Python: Decimal to int when integral, else float; sets to lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | set | frozenset):
        return [from_dynamo(v) for v in value]
    return value


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict -> a low-level DynamoDB item ({"attr": {"S": ...}})."""
    return {k: _serializer.serialize(to_dynamo(v)) for k, v in item.items()}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """A low-level DynamoDB item -> a plain dict with int/float numbers."""
    return {k: from_dynamo(_deserializer.deserialize(v)) for k, v in item.items()}


def encode_cursor(last_key: Mapping[str, Any] | None) -> str | None:
    """DynamoDB's LastEvaluatedKey -> an opaque URL-safe cursor (None at the end of a listing)."""
    if not last_key:
        return None
    raw = json.dumps(last_key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, key_attributes: set[str]) -> dict[str, Any] | None:
    """An opaque cursor -> ExclusiveStartKey; InvalidCursor unless it holds exactly these string keys."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        # Depth is checked before parsing: json.loads would recurse into a deeply nested cursor.
        key = None if too_deep(raw, CURSOR_DEPTH) else json.loads(raw)
    except (ValueError, binascii.Error) as exc:
        raise InvalidCursor("the cursor is not one this listing returned") from exc
    valid = (
        isinstance(key, dict)
        and set(key) == key_attributes
        and all(isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in key.values())
    )
    if not valid:
        raise InvalidCursor("the cursor is not one this listing returned")
    return key


def dynamo_errors(action: str, *, condition_failed: MoodboardError | None = None) -> AbstractContextManager[None]:
    """DynamoDB's error mapping: a failed ConditionExpression raises `condition_failed` (when given),
    any other failure StoreError (503) saying what we were doing (moodboard.aws.aws_errors)."""
    errors = {CONDITION_FAILED: condition_failed} if condition_failed is not None else None
    return aws_errors("DynamoDB", action, errors)


class Page(BaseModel, Generic[T]):
    """One page of a listing and the cursor of the next (None when there is none)."""

    items: list[T]
    next_cursor: str | None = None
