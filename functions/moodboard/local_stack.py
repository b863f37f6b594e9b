"""AWS for the local web stack: an embedded moto server, another endpoint, or real AWS.

`moodboard serve` runs the same boto3 code as the Lambdas. Unless an endpoint
(Settings.aws_endpoint_url, e.g. localstack) or real AWS credentials are configured, S3 and DynamoDB
come from moto's server in a thread on 127.0.0.1 at a free port; the bucket and tables are created
on start (for real AWS the CDK stack owns them). Whether real credentials exist is decided from the
environment and the shared credentials file only: probing the instance metadata endpoint
(169.254.169.254) from a laptop would hang, and reaching it is never wanted here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import ClientError

from moodboard.errors import StoreError
from moodboard.settings import Settings

logger = logging.getLogger(__name__)

AwsMode = Literal["auto", "moto", "real"]
LOCAL_BUCKET = "moodboard-local-artifacts"
MOTO_HOST = "127.0.0.1"
# moto accepts any credentials; botocore needs some to sign requests.
MOTO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "moto-local", "AWS_SECRET_ACCESS_KEY": "moto-local"}
_CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                         "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")


@dataclass
class LocalAWS:
    """Where the local stack's AWS services are: kind, endpoint (None for real AWS), moto server."""

    kind: Literal["moto", "endpoint", "aws"]
    endpoint_url: str | None
    server: Any | None = None

    def describe(self) -> str:
        """One line for the console."""
        if self.kind == "moto":
            return f"embedded moto server at {self.endpoint_url} (data lives until the server stops)"
        if self.kind == "endpoint":
            return f"AWS endpoint {self.endpoint_url}"
        return "real AWS (credentials from the environment)"

    def stop(self) -> None:
        """Stop the embedded moto server, if this started one."""
        if self.server is not None:
            self.server.stop()
            self.server = None


def real_credentials_configured(environ: dict[str, str] | None = None) -> bool:
    """True when AWS credentials are configured in the environment or ~/.aws (never probes IMDS)."""
    env = os.environ if environ is None else environ
    if any(env.get(name) for name in _CREDENTIAL_VARIABLES):
        return True
    shared = Path(env.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")).expanduser()
    return shared.is_file()


def start_local_aws(settings: Settings, mode: AwsMode = "auto") -> LocalAWS:
    """Choose (and, for moto, start) the AWS services of a local run."""
    if settings.aws_endpoint_url and mode != "moto":
        return LocalAWS("endpoint", settings.aws_endpoint_url)
    if mode == "real" or (mode == "auto" and real_credentials_configured()):
        return LocalAWS("aws", None)
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
    server = ThreadedMotoServer(ip_address=MOTO_HOST, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    logger.info("moto server listening at %s", endpoint)
    return LocalAWS("moto", endpoint, server)


def ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    """Create the artifacts bucket unless it exists."""
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError:
        pass
    args: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**args)
    except ClientError as exc:
        raise StoreError(f"cannot create the bucket {bucket}: {exc.response['Error'].get('Code')}") from exc
    logger.info("created bucket %s", bucket)


def ensure_resources(settings: Settings, s3: Any, dynamodb: Any) -> None:
    """Create the artifacts bucket and the DynamoDB tables a local run needs."""
    from moodboard.tables import create_tables

    assert settings.artifacts_bucket
    ensure_bucket(s3, settings.artifacts_bucket, settings.aws_region)
    create_tables(dynamodb, settings)
