"""The serving side's CurrentIndex: it follows CURRENT, refuses bad versions and rides out S3 faults,
against moto (in-process).

Faults are injected through botocore's own event hook (`before-send`): S3 answers a request for one
index version with a 503 SlowDown, a 500 InternalError, a dropped connection or a read timeout, as
S3 does, and the client's retries are off so each injected failure reaches the reader.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from moodboard.artifacts import CURRENT_KEY, ArtifactStore
from moodboard.errors import IndexUnavailable
from moodboard.runtime import RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS, CurrentIndex
from moto import mock_aws

from tests.unit.test_artifacts import BUCKET, FINGERPRINT, make_bundle

REFRESH = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def s3_error(status: int, code: str) -> Callable[[Any], AWSResponse]:
    """An S3 error response, as S3 sends it (XML body; a HEAD gets the status alone)."""
    body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>injected</Message></Error>'

    def respond(request: Any) -> AWSResponse:
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Body(body.encode()))

    return respond


def raise_(error: Callable[[str], Exception]) -> Callable[[Any], AWSResponse]:
    def respond(request: Any) -> AWSResponse:
        raise error(request.url)

    return respond


class _StalledBody(_Body):
    """A 200 response whose body never arrives: reading it times out."""

    def read(self, *_: Any, **__: Any) -> bytes:
        from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeout

        raise Urllib3ReadTimeout(None, "", "injected: the body stalled")

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.read()


def stalled_body(request: Any) -> AWSResponse:
    if request.method == "HEAD":
        return AWSResponse(request.url, 200, {"Content-Length": "1024", "ETag": '"e"'}, _Body(b""))
    return AWSResponse(request.url, 200, {"Content-Length": "1024", "ETag": '"e"'}, _StalledBody(b""))


TRANSIENT = {
    "throttled-503": s3_error(503, "SlowDown"),
    "internal-500": s3_error(500, "InternalError"),
    "connection-error": raise_(lambda url: EndpointConnectionError(endpoint_url=url)),
    "read-timeout": raise_(lambda url: ReadTimeoutError(endpoint_url=url)),
    "stalled-body": stalled_body,
}


class S3Outage:
    """Fails the next `failures` S3 requests that touch indexes/<version>/ with `respond`; counts them."""

    def __init__(self, client: Any) -> None:
        self.version: str | None = None
        self.files_only = False
        self.failures = 0
        self.respond: Callable[[Any], AWSResponse] = TRANSIENT["throttled-503"]
        self.requests = 0
        client.meta.events.register_first("before-send.s3", self._before_send)

    def fail(self, version: str, failures: int, respond: Callable[[Any], AWSResponse], *,
             files_only: bool = False) -> None:
        """Fail requests for that version's files (and its listing, unless `files_only`)."""
        self.version, self.failures, self.respond, self.requests = version, failures, respond, 0
        self.files_only = files_only

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        url = unquote(request.url)
        if self.version is None or f"indexes/{self.version}/" not in url or (self.files_only and "list-type" in url):
            return None
        self.requests += 1
        if self.failures <= 0:
            return None
        self.failures -= 1
        return self.respond(request)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1}))
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def outage(s3: Any) -> S3Outage:
    return S3Outage(s3)


@pytest.fixture
def store(s3: Any) -> ArtifactStore:
    return ArtifactStore(BUCKET, s3)


def reader(store: ArtifactStore, tmp_path: Path, clock: Clock) -> CurrentIndex:
    return CurrentIndex(fingerprint=FINGERPRINT, store=store, cache_dir=tmp_path / "cache", refresh_seconds=REFRESH,
                        clock=clock)


@pytest.mark.parametrize(("fault", "files_only"), [
    *((fault, False) for fault in sorted(TRANSIENT) if fault != "stalled-body"),  # the version's listing fails
    *((fault, True) for fault in sorted(TRANSIENT)),  # a file of it fails
])
def test_transient_s3_error_on_a_new_version_keeps_the_old_one_and_retries(
        store: ArtifactStore, outage: S3Outage, tmp_path: Path, fault: str, files_only: bool) -> None:
    clock = Clock()
    v1 = store.publish(make_bundle(tmp_path / "b1", seed=1))
    current = reader(store, tmp_path, clock)
    old = current.get()
    v2 = store.publish(make_bundle(tmp_path / "b2", seed=2))
    # boto3's transfer manager retries a stalled body 5 times itself: fail every one of them
    outage.fail(v2.version, failures=20 if fault == "stalled-body" else 1, respond=TRANSIENT[fault],
                files_only=files_only)

    clock.now += REFRESH + 1
    served = current.get()

    assert served is old and served.version == v1.version
    assert outage.requests >= 1
    outage.failures = 0
    assert current.refused == {}
    assert list(current.postponed) == [v2.version]

    clock.now += REFRESH + 1
    assert current.get().version == v2.version
    assert current.refused == {} and current.postponed == {}
    assert current.get().get("p1").title == "Product 1"


def test_cold_start_retries_a_failing_version_with_a_doubling_backoff(
        store: ArtifactStore, outage: S3Outage, tmp_path: Path) -> None:
    clock = Clock()
    v1 = store.publish(make_bundle(tmp_path / "b1", seed=1))
    outage.fail(v1.version, failures=3, respond=TRANSIENT["throttled-503"])
    current = reader(store, tmp_path, clock)

    with pytest.raises(IndexUnavailable,
                       match=rf"{v1.version} could not be loaded \(S3 failed .*SlowDown.*trying again in 1 s"):
        current.get()
    attempts = outage.requests
    clock.now += RETRY_FIRST_SECONDS / 2  # inside the backoff: no request reaches S3's index files
    with pytest.raises(IndexUnavailable, match="trying again in 1 s"):
        current.get()
    assert outage.requests == attempts

    clock.now += RETRY_FIRST_SECONDS / 2  # second attempt fails: the wait doubles
    with pytest.raises(IndexUnavailable, match="trying again in 2 s"):
        current.get()
    clock.now += 2 * RETRY_FIRST_SECONDS  # third attempt fails: 4 s
    with pytest.raises(IndexUnavailable, match="trying again in 4 s"):
        current.get()
    clock.now += 4 * RETRY_FIRST_SECONDS  # S3 is well again
    assert current.get().version == v1.version
    assert current.refused == {} and current.postponed == {}


def test_backoff_is_capped(store: ArtifactStore, outage: S3Outage, tmp_path: Path) -> None:
    clock = Clock()
    v1 = store.publish(make_bundle(tmp_path / "b1", seed=1))
    outage.fail(v1.version, failures=100, respond=TRANSIENT["internal-500"])
    current = reader(store, tmp_path, clock)
    for _ in range(12):
        with pytest.raises(IndexUnavailable):
            current.get()
        clock.now += RETRY_MAX_SECONDS
    with pytest.raises(IndexUnavailable, match=f"trying again in {RETRY_MAX_SECONDS:.0f} s"):
        current.get()

    outage.failures = 0
    clock.now += RETRY_MAX_SECONDS
    assert current.get().version == v1.version


def test_a_corrupt_version_is_refused_for_good(store: ArtifactStore, s3: Any, outage: S3Outage,
                                               tmp_path: Path) -> None:
    clock = Clock()
    v1 = store.publish(make_bundle(tmp_path / "b1", seed=1))
    current = reader(store, tmp_path, clock)
    current.get()
    v2 = store.publish(make_bundle(tmp_path / "b2", seed=2))
    s3.put_object(Bucket=BUCKET, Key=f"indexes/{v2.version}/index.bin", Body=b"garbage")
    outage.fail(v2.version, failures=0, respond=TRANSIENT["internal-500"])  # count requests only

    clock.now += REFRESH + 1
    assert current.get().version == v1.version
    assert "index.bin does not match its sha256" in current.refused[v2.version]
    downloads = outage.requests
    for _ in range(3):
        clock.now += RETRY_MAX_SECONDS + REFRESH
        assert current.get().version == v1.version
    assert outage.requests == downloads
    assert current.postponed == {}


def test_reader_with_nothing_published_is_unavailable(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(IndexUnavailable, match="nothing has been published yet"):
        reader(store, tmp_path, Clock()).get()


def test_reader_rechecks_the_pointer_only_after_the_interval(store: ArtifactStore, tmp_path: Path) -> None:
    clock = Clock()
    v1 = store.publish(make_bundle(tmp_path / "b1", seed=1))
    current = reader(store, tmp_path, clock)
    assert current.get().version == v1.version

    v2 = store.publish(make_bundle(tmp_path / "b2", seed=2))
    clock.now += 59
    assert current.get().version == v1.version
    clock.now += 2
    assert current.get().version == v2.version
    assert not (tmp_path / "cache" / "indexes" / "never").exists()


def test_corrupt_new_version_leaves_search_on_the_old_one(store: ArtifactStore, s3: Any, tmp_path: Path) -> None:
    clock = Clock()
    v1 = store.publish(make_bundle(tmp_path / "b1", seed=1))
    current = reader(store, tmp_path, clock)
    old = current.get()
    v2 = store.publish(make_bundle(tmp_path / "b2", seed=2))
    s3.put_object(Bucket=BUCKET, Key=f"indexes/{v2.version}/index.bin", Body=b"garbage")

    clock.now += 61
    served = current.get()

    assert served is old and served.version == v1.version
    assert "index.bin does not match its sha256" in current.refused[v2.version]
    assert not (tmp_path / "cache" / "indexes" / v2.version).exists()
    assert served.get("p1").title == "Product 1"


def test_missing_new_version_leaves_search_on_the_old_one(store: ArtifactStore, s3: Any, tmp_path: Path) -> None:
    clock = Clock()
    v1 = store.publish(make_bundle(tmp_path / "b1", seed=1))
    current = reader(store, tmp_path, clock)
    current.get()
    store.move_current("20991231T000000Z-dead", FINGERPRINT, expected=store.current())

    clock.now += 61
    assert current.get().version == v1.version
    assert "20991231T000000Z-dead" in current.refused


def test_new_version_with_another_fingerprint_is_refused(store: ArtifactStore, tmp_path: Path) -> None:
    clock = Clock()
    v1 = store.publish(make_bundle(tmp_path / "b1", seed=1))
    current = reader(store, tmp_path, clock)
    current.get()
    v2 = store.publish(make_bundle(tmp_path / "b2", seed=2, fingerprint="another-model-0002"))

    clock.now += 61
    assert current.get().version == v1.version
    assert "another-model-0002" in current.refused[v2.version]
    assert not (tmp_path / "cache" / "indexes" / v2.version).exists()


def test_unreadable_pointer_keeps_serving(store: ArtifactStore, s3: Any, tmp_path: Path) -> None:
    clock = Clock()
    v1 = store.publish(make_bundle(tmp_path / "b1", seed=1))
    current = reader(store, tmp_path, clock)
    current.get()
    s3.put_object(Bucket=BUCKET, Key=CURRENT_KEY, Body=b"{not json")

    clock.now += 61
    assert current.get().version == v1.version
