"""A download the transfer manager gives up retrying (throttled, timing out) is a StoreError (503),
whichever RetriesExceededError carries it: boto3's (client.download_file) or s3transfer's own
(download_fileobj, a TransferManager used directly); and CurrentIndex postpones such a version."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.response import StreamingBody
from moodboard.artifacts import ArtifactStore
from moodboard.errors import StoreError
from moodboard.runtime import CurrentIndex
from s3transfer.exceptions import RetriesExceededError as TransferRetriesExceeded

from tests.catalogs import BUCKET
from tests.unit.test_artifacts import FINGERPRINT, make_bundle

class TimingOut(io.RawIOBase):
    """A GetObject body whose every read times out, as a throttled or stalled S3 connection does."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise ReadTimeoutError(endpoint_url="http://127.0.0.1:1")


def time_out_every_get(client: Any) -> list[str]:
    """Make every GetObject of `client` answer a body that times out (s3transfer retries those
    reads, then gives up); returns the keys asked for."""
    asked: list[str] = []

    def swap(http_response: Any, parsed: dict[str, Any], model: Any, **kwargs: Any) -> None:
        asked.append("GetObject")
        parsed["Body"] = StreamingBody(TimingOut(), 10)

    client.meta.events.register("after-call.s3.GetObject", swap)
    return asked


class TransferGivesUp:
    """A client whose managed download ends as s3transfer's TransferManager ends a throttled one."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def download_file(self, bucket: str, key: str, filename: str, **_: Any) -> None:
        raise TransferRetriesExceeded(ReadTimeoutError(endpoint_url="http://127.0.0.1:1"))


def test_a_download_that_keeps_timing_out_is_a_store_error(moto_bucket: Any, tmp_path: Path) -> None:
    moto_bucket.put_object(Bucket=BUCKET, Key="catalogs/c.csv", Body=b"x" * 10)
    asked = time_out_every_get(moto_bucket)

    with pytest.raises(StoreError) as caught:
        ArtifactStore(BUCKET, moto_bucket).download_file("catalogs/c.csv", tmp_path / "c.csv")

    assert caught.value.status_code == 503
    assert caught.value.message == "S3 failed to download catalogs/c.csv (RetriesExceededError: ReadTimeoutError)"
    assert len(asked) > 1  # retried before giving up


def test_s3transfers_own_retries_exceeded_error_is_a_store_error(moto_bucket: Any, tmp_path: Path) -> None:
    moto_bucket.put_object(Bucket=BUCKET, Key="catalogs/c.zip", Body=b"x" * 10)

    with pytest.raises(StoreError) as caught:
        ArtifactStore(BUCKET, TransferGivesUp(moto_bucket)).download_file("catalogs/c.zip", tmp_path / "c.zip")

    assert caught.value.status_code == 503
    assert caught.value.message == "S3 failed to download catalogs/c.zip (RetriesExceededError: ReadTimeoutError)"
    assert isinstance(caught.value.__cause__, TransferRetriesExceeded)


def test_current_index_postpones_a_version_whose_download_gives_up(moto_bucket: Any, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    ArtifactStore(BUCKET, moto_bucket).publish(bundle)
    store = ArtifactStore(BUCKET, TransferGivesUp(moto_bucket))  # every file goes through download_file
    current = CurrentIndex(fingerprint=FINGERPRINT, store=store, cache_dir=tmp_path / "cache", clock=lambda: 0.0)

    with pytest.raises(StoreError, match="RetriesExceededError"):
        current.get()

    [(version, reason)] = current.postponed.items()
    assert version == store.current().version and "RetriesExceededError: ReadTimeoutError" in reason
    assert current.refused == {}  # a passing failure: tried again later, never refused for good
