"""The S3 artifact store: publish, the CURRENT pointer, downloads, against moto (in-process)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from moodboard.artifacts import CURRENT_KEY, ArtifactStore, Pointer
from moodboard.catalog import Product
from moodboard.errors import BundleError, PublishConflict, StoreError
from moodboard.index import IndexBuilder, ProductIndex, verify

from tests.catalogs import BUCKET

FINGERPRINT = "fake-embedder-0001"


@pytest.fixture
def s3(moto_bucket: Any) -> Any:
    """In-process moto S3 with the empty bucket BUCKET (the shared `moto_bucket`, tests/conftest.py)."""
    return moto_bucket


@pytest.fixture
def store(s3: Any) -> ArtifactStore:
    return ArtifactStore(BUCKET, s3)


def make_bundle(path: Path, *, fingerprint: str = FINGERPRINT, n: int = 6, seed: int = 0) -> Path:
    """A small real index bundle (random unit vectors, two categories)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    products = [Product(id=f"p{i}", title=f"Product {i}", category="dress" if i % 2 else "lamp",
                        image=f"https://shop.example/p{i}.jpg") for i in range(n)]
    builder = IndexBuilder(8, fingerprint)
    builder.add(products, vectors, [f"key-{seed}-{i}" for i in range(n)])
    builder.write(path)
    return path


def version_of(bundle: Path) -> str:
    return json.loads((bundle / "manifest.json").read_text())["version"]


def current_version(s3: Any) -> str | None:
    try:
        return json.loads(s3.get_object(Bucket=BUCKET, Key=CURRENT_KEY)["Body"].read())["version"]
    except s3.exceptions.NoSuchKey:
        return None


def test_publish_uploads_version_then_moves_current(store: ArtifactStore, s3: Any, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b1")

    pointer = store.publish(bundle)

    assert pointer.version == version_of(bundle)
    assert current_version(s3) == pointer.version
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="indexes/")["Contents"]}
    assert {f"indexes/{pointer.version}/{name}" for name in
            ("manifest.json", "index.bin", "products.jsonl")} <= keys
    assert store.current() == Pointer(pointer.version, FINGERPRINT, pointer.etag, pointer.published)


def test_download_verifies_and_round_trips(store: ArtifactStore, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b1")
    pointer = store.publish(bundle)

    path = store.download(pointer.version, tmp_path / "cache")

    assert path == tmp_path / "cache" / pointer.version
    assert verify(path).version == pointer.version
    assert ProductIndex.open(path, expected_fingerprint=FINGERPRINT).get("p3").title == "Product 3"


class FailingS3:
    """Passes calls to a real (moto) client, failing the n-th put_object like a dropped connection."""

    def __init__(self, client: Any, fail_on_put: int) -> None:
        self._client = client
        self._fail_on = fail_on_put
        self._puts = 0
        self._lock = threading.Lock()

    def put_object(self, **kwargs: Any) -> Any:
        with self._lock:
            self._puts += 1
            failing = self._puts == self._fail_on
        if failing:
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")
        return self._client.put_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_publish_failing_part_way_leaves_current_unchanged(store: ArtifactStore, s3: Any, tmp_path: Path) -> None:
    old = store.publish(make_bundle(tmp_path / "b1", seed=1))
    broken = ArtifactStore(BUCKET, FailingS3(s3, fail_on_put=2))
    new_bundle = make_bundle(tmp_path / "b2", seed=2)

    with pytest.raises(StoreError, match="S3 failed to upload"):
        broken.publish(new_bundle)

    assert current_version(s3) == old.version
    manifest_key = f"indexes/{version_of(new_bundle)}/manifest.json"
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=manifest_key)


def test_publish_refuses_a_bundle_whose_files_do_not_match_the_manifest(store: ArtifactStore, s3: Any,
                                                                         tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b1")
    (bundle / "products.jsonl").write_bytes(b"not the products")

    with pytest.raises(BundleError, match="products.jsonl does not match its sha256"):
        store.publish(bundle)

    assert current_version(s3) is None
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="indexes/")


def test_publish_from_a_stale_pointer_is_a_conflict(store: ArtifactStore, s3: Any, tmp_path: Path) -> None:
    first = store.publish(make_bundle(tmp_path / "b1", seed=1))
    second = store.publish(make_bundle(tmp_path / "b2", seed=2), base=first)

    with pytest.raises(PublishConflict):
        store.publish(make_bundle(tmp_path / "b3", seed=3), base=first)
    with pytest.raises(PublishConflict):
        store.publish(make_bundle(tmp_path / "b4", seed=4), base=None)

    assert current_version(s3) == second.version


@pytest.fixture
def atomic_moto_puts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's conditional PUT atomic, as S3's is.

    moto 5.2.5 implements If-Match / If-None-Match on PutObject (we rely on that) but checks the
    condition and stores the object in two steps without a lock; real S3 evaluates the condition
    atomically. Serialising moto's PutObject handler gives the test S3's semantics, so it checks
    our protocol rather than moto's race window.
    """
    from moto.s3.responses import S3Response

    lock = threading.Lock()
    original = S3Response.put_object

    def locked(self: S3Response) -> Any:
        with lock:
            return original(self)

    monkeypatch.setattr(S3Response, "put_object", locked)


@pytest.mark.parametrize("with_existing_pointer", [False, True])
def test_concurrent_publishes_produce_exactly_one_winner(store: ArtifactStore, s3: Any, tmp_path: Path,
                                                         atomic_moto_puts: None, with_existing_pointer: bool) -> None:
    if with_existing_pointer:
        store.publish(make_bundle(tmp_path / "b0", seed=100))
    bundles = [make_bundle(tmp_path / f"race{i}", seed=i) for i in range(6)]
    base = store.current()
    barrier = threading.Barrier(len(bundles))
    winners: list[str] = []
    losers: list[str] = []
    errors: list[BaseException] = []

    def publish(bundle: Path) -> None:
        barrier.wait()
        try:
            winners.append(store.publish(bundle, base=base).version)
        except PublishConflict:
            losers.append(version_of(bundle))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(b,)) for b in bundles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(winners) == 1
    assert len(losers) == len(bundles) - 1
    assert current_version(s3) == winners[0]


def test_download_refuses_keys_that_escape_the_folder(store: ArtifactStore, s3: Any, tmp_path: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key="indexes/v1/../../evil", Body=b"x")

    with pytest.raises(BundleError, match="leaves"):
        store.download_prefix("indexes/v1/", tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_model_bundle_downloads_from_s3_once(s3: Any, tmp_path: Path) -> None:
    from moodboard.artifacts import download_model

    s3.put_object(Bucket=BUCKET, Key="models/abc123/manifest.json", Body=b'{"format": "moodboard-model/1"}')
    s3.put_object(Bucket=BUCKET, Key="models/abc123/vision.onnx", Body=b"graph")

    path = download_model(f"s3://{BUCKET}/models/abc123", s3, tmp_path / "cache")
    s3.delete_object(Bucket=BUCKET, Key="models/abc123/vision.onnx")
    again = download_model(f"s3://{BUCKET}/models/abc123/", s3, tmp_path / "cache")

    assert again == path and path.parent == tmp_path / "cache" / "models"
    assert (path / "vision.onnx").read_bytes() == b"graph"


def test_model_download_without_a_bundle_fails_clearly(s3: Any, tmp_path: Path) -> None:
    from moodboard.artifacts import download_model

    with pytest.raises(BundleError, match="no model bundle at"):
        download_model(f"s3://{BUCKET}/models/none/", s3, tmp_path / "cache")
    assert not any((tmp_path / "cache" / "models").iterdir())
