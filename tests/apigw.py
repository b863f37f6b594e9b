"""Helpers for driving Lambda handlers in tests: API Gateway HTTP API (v2) events built from the
sample files in tests/events/, a Lambda context, and multipart bodies."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).parent / "events"


@cache
def _sample(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of a sample event from tests/events/."""
    return copy.deepcopy(_sample(name))


def http_event(method: str, path: str, *, body: bytes | str | None = None, query: str = "",
               headers: dict[str, str] | None = None, content_type: str | None = "application/json",
               declared_length: int | None = None) -> dict[str, Any]:
    """An API Gateway HTTP API v2 event for one request, shaped like the samples (which came from
    real API Gateway payloads). Binary bodies are base64-encoded as API Gateway does."""
    event = load_event("search_post.json" if method in ("POST", "PUT", "PATCH") else "search_get.json")
    event["rawPath"] = path
    event["rawQueryString"] = query
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["requestContext"]["requestId"] = uuid.uuid4().hex[:12] + "="
    event["headers"].pop("content-type", None)
    if query:
        event["queryStringParameters"] = dict(part.split("=", 1) for part in query.split("&"))
    if body is None:
        event.pop("body", None)
        event["isBase64Encoded"] = False
        event["headers"]["content-length"] = "0"
    else:
        raw = body.encode() if isinstance(body, str) else body
        try:
            text = raw.decode("utf-8")
            binary = False
        except UnicodeDecodeError:
            binary = True
        event["body"] = base64.b64encode(raw).decode() if binary else text
        event["isBase64Encoded"] = binary
        event["headers"]["content-length"] = str(declared_length if declared_length is not None else len(raw))
        if content_type:
            event["headers"]["content-type"] = content_type
    event["headers"].update(headers or {})
    return event


def json_event(path: str, payload: Any, **kwargs: Any) -> dict[str, Any]:
    """A POST event with a JSON body."""
    return http_event("POST", path, body=json.dumps(payload), **kwargs)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data request."""
    boundary = "----moodboard" + uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, ctype) in files.items():
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {ctype}\r\n\r\n").encode()
        parts.append(head + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass
class LambdaContext:
    """The attributes of a Lambda context that Powertools reads."""

    function_name: str = "moodboard-test"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:moodboard-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def response_json(response: dict[str, Any]) -> Any:
    """The JSON body of a Mangum response."""
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return json.loads(body)
