"""boto3 clients built from settings: real AWS, or another endpoint (moto server) when configured."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

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
