"""boto3 clients built from settings, and the one mapping of boto3's failures to domain errors.

Clients point at real AWS, or at another endpoint (the moto server) when one is configured. Each
backend names the codes it treats apart on top of `aws_errors` (moodboard.artifacts.s3_errors,
moodboard.dynamo.dynamo_errors); any other failure is a StoreError (503).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import boto3
from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.exceptions import RetriesExceededError as TransferRetriesExceeded

from moodboard.errors import MoodboardError, StoreError
from moodboard.settings import Settings

_RETRIES = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3, read_timeout=10)


def client(service: str, settings: Settings) -> Any:
    """A boto3 client for `service`, pointed at settings.aws_endpoint_url when it is set."""
    return boto3.client(
        service,
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        config=_RETRIES,
    )


def error_code(exc: ClientError) -> str:
    """The AWS error code of a failed call ("NoSuchKey", "ConditionalCheckFailedException", "412" ...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def aws_errors(service: str, action: str, errors: Mapping[str, MoodboardError] | None = None) -> Iterator[None]:
    """Turn boto3 failures inside the block into domain errors, chained: a ClientError whose code is
    in `errors` into that error, any other failure into StoreError (503) saying what failed and why."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if errors and code in errors:
            raise errors[code] from exc
        message = f"{service} failed to {action} ({code or 'ClientError'})"
        raise StoreError(message, details={"aws_error": code}) from exc
    except (BotoCoreError, Boto3Error, TransferRetriesExceeded) as exc:
        # The transfer manager gave up retrying (throttled, timed out): client.download_file raises
        # boto3's RetriesExceededError (a Boto3Error), download_fileobj and s3transfer's own
        # TransferManager s3transfer's, which is a bare Exception; both name the last failure.
        raise StoreError(f"{service} failed to {action} ({_failure(exc)})") from exc


def _failure(exc: Exception) -> str:
    """The failure's class name, and for a transfer that gave up retrying the last one's too."""
    last = getattr(exc, "last_exception", None)
    return f"{type(exc).__name__}: {type(last).__name__}" if isinstance(last, BaseException) else type(exc).__name__
