"""AWS for the local web stack: an embedded moto server, another endpoint, or real AWS.

`moodboard serve` runs the same boto3 code as the Lambdas. Unless an endpoint
(Settings.aws_endpoint_url, e.g. localstack) or real AWS credentials are configured, S3 and DynamoDB
come from moto's server in a thread on 127.0.0.1 at a free port; the bucket and tables are created
on start (for real AWS the CDK stack owns them). Whether real credentials exist is decided from the
environment and the shared credentials file only: probing the instance metadata endpoint
(169.254.169.254) from a laptop would hang, and reaching it is never wanted here.

DynamoDB applies each request to an item atomically, and S3 evaluates a conditional write
(If-Match / If-None-Match) atomically; the code relies on both (a rating's upsert and revision count,
the CURRENT pointer's move). moto's backends read, change and write back without a lock, and its
server answers requests in threads, so two concurrent UpdateItems of one new item both "created" it
and revisions were lost. `LocalMotoServer` therefore applies DynamoDB requests and conditional S3
writes one at a time; everything else (S3 reads, plain uploads) stays concurrent.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from moodboard.errors import NotFound
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
            state = getattr(self.server, "state", None)
            kept = (f"data kept in {state.folder.parent}" if state is not None
                    else "data lives until the server stops")
            return f"embedded moto server at {self.endpoint_url} ({kept})"
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


def start_local_aws(settings: Settings, mode: AwsMode = "auto", *, state_dir: Path | None = None) -> LocalAWS:
    """Choose (and, for moto, start) the AWS services of a local run; with `state_dir` moto's data is
    restored from there and saved back (moodboard_local.local_data)."""
    if settings.aws_endpoint_url and mode != "moto":
        return LocalAWS("endpoint", settings.aws_endpoint_url)
    if mode == "real" or (mode == "auto" and real_credentials_configured()):
        return LocalAWS("aws", None)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
    server = LocalMotoServer(MOTO_HOST, state_dir=state_dir)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    logger.info("moto server listening at %s", endpoint)
    return LocalAWS("moto", endpoint, server)


def _atomic_in_aws(environ: dict[str, Any]) -> bool:
    """Whether AWS applies this request atomically: any DynamoDB call, or a conditional S3 write."""
    if str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
        return True
    conditional = environ.get("HTTP_IF_MATCH") or environ.get("HTTP_IF_NONE_MATCH")
    return bool(conditional) and environ.get("REQUEST_METHOD") not in ("GET", "HEAD")


class _OneAtATime:
    """WSGI middleware: requests `atomic(environ)` picks run one at a time, to the end of their response."""

    def __init__(self, app: Callable[..., Iterable[bytes]], atomic: Callable[[dict[str, Any]], bool], *,
                 lock: threading.Lock | None = None,
                 after: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._app = app
        self._atomic = atomic
        self._lock = lock or threading.Lock()
        self._after = after

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self._atomic(environ):
            return self._app(environ, start_response)
        with self._lock:
            response = self._app(environ, start_response)
            try:
                return [b"".join(response)]
            finally:
                close = getattr(response, "close", None)
                if close is not None:
                    close()
                if self._after is not None:
                    self._after(environ)


class LocalMotoServer:
    """moto's server in a thread on `host` (a free port), with AWS's atomicity for DynamoDB requests
    and conditional S3 writes (see the module docstring). Built from the same parts as moto's
    ThreadedMotoServer, whose WSGI app cannot be wrapped from outside."""

    def __init__(self, host: str = MOTO_HOST, port: int = 0, *, state_dir: Path | None = None) -> None:
        self._host = host
        self._port = port
        self._state_dir = state_dir
        self.state: Any | None = None
        self._server: Any | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve in a daemon thread; returns once the port is bound."""
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        if self._state_dir is None:
            app = _OneAtATime(DomainDispatcherApplication(create_backend_app), _atomic_in_aws)
        else:
            # Kept data: every change runs one at a time too, so a save never pickles half a request.
            from moodboard_local.local_data import MotoState, changes_state, service_of

            lock = threading.Lock()
            self.state = state = MotoState(self._state_dir, lock)
            restored = state.restore()
            logger.info("restored %s from %s", ", ".join(restored) or "nothing", self._state_dir)

            def after(environ: dict[str, Any]) -> None:
                if changes_state(environ):
                    state.mark_dirty(service_of(environ) or "s3")

            app = _OneAtATime(DomainDispatcherApplication(create_backend_app),
                              lambda e: _atomic_in_aws(e) or changes_state(e), lock=lock, after=after)
            state.start()
        self._server = make_server(self._host, self._port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        """Where it listens."""
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.state is not None:
            self.state.stop()
            self.state = None


def ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    """Create the artifacts bucket unless it exists."""
    from moodboard.artifacts import s3_errors

    try:
        with s3_errors(f"read the bucket {bucket}", missing=NotFound(f"no bucket {bucket}")):
            s3.head_bucket(Bucket=bucket)
        return
    except NotFound:
        pass
    args: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": region}
    with s3_errors(f"create the bucket {bucket}"):
        s3.create_bucket(**args)
    logger.info("created bucket %s", bucket)


def ensure_resources(settings: Settings, s3: Any, dynamodb: Any) -> None:
    """Create the artifacts bucket and the DynamoDB tables a local run needs."""
    from moodboard.tables import create_tables

    assert settings.artifacts_bucket
    ensure_bucket(s3, settings.artifacts_bucket, settings.aws_region)
    create_tables(dynamodb, settings)
