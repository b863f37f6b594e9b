"""The loader Lambda handler with real-shaped S3 and direct events, against moto (in-process)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moodboard.artifacts import CURRENT_KEY, ArtifactStore
from moodboard.load_jobs import JobStore
from moodboard.runtime import Runtime, set_runtime
from moodboard.settings import Settings
from moodboard.tables import create_tables
from moodboard_local.demo_catalog import generate_demo_catalog

from tests.apigw import LambdaContext, load_event
from tests.catalogs import BUCKET, upload_demo_catalog
from tests.fakes import FakeEmbedder

PREFIX = "catalogs/spring shop/"


@pytest.fixture
def aws(moto_bucket: Any) -> tuple[Any, Any]:
    return moto_bucket, boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def settings(tmp_path: Path, aws: tuple[Any, Any]) -> Iterator[Settings]:
    s3, dynamodb = aws
    settings = Settings(artifacts_bucket=BUCKET, cache_dir=tmp_path / "cache", fetch_concurrency=2)
    create_tables(dynamodb, settings)
    set_runtime(Runtime(settings, s3=s3, dynamodb=dynamodb, embedder=FakeEmbedder()))
    yield settings
    set_runtime(None)


@pytest.fixture
def handler(settings: Settings) -> Any:
    from loader.handler import handler

    return handler


def upload_catalog(s3: Any, tmp_path: Path, *, extra_rows: list[dict[str, str]] = ()) -> int:
    """A generated catalog (2 types x 3) plus extra rows, uploaded with its images; returns the good rows."""
    return len(upload_demo_catalog(s3, BUCKET, PREFIX, tmp_path / "catalog", extra_rows=extra_rows))


def current(s3: Any) -> dict[str, Any] | None:
    try:
        return json.loads(s3.get_object(Bucket=BUCKET, Key=CURRENT_KEY)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def test_s3_event_builds_and_publishes_an_index(handler: Any, aws: tuple[Any, Any], settings: Settings,
                                                tmp_path: Path) -> None:
    s3, dynamodb = aws
    good = upload_catalog(s3, tmp_path, extra_rows=[
        {"id": "no-category", "title": "x", "image": "images/dress-0000.jpg"},
        {"id": "lost-image", "title": "Lost", "category": "dress", "image": "images/not-uploaded.jpg"},
    ])
    event = load_event("s3_catalog_created.json")

    result = handler(event, LambdaContext())

    [outcome] = result["results"]
    assert outcome["status"] == "succeeded"
    assert outcome["loaded"] == good and outcome["embedded"] == good
    assert current(s3)["version"] == outcome["version"]
    job = JobStore(dynamodb, settings.jobs_table).get(outcome["job_id"])
    assert job.status == "succeeded"
    assert job.catalog_key == PREFIX + "catalog.csv"
    assert job.progress["stage"] == "published"
    reasons = {r.get("product_id") or r.get("line"): r["reason"] for r in job.rejects}
    assert "lost-image" in reasons and "category" in " ".join(str(v) for v in reasons.values())
    bundle = ArtifactStore(BUCKET, s3).download(outcome["version"], tmp_path / "check")
    assert (bundle / "thumbs").is_dir()


def test_direct_event_reuses_the_current_index(handler: Any, aws: tuple[Any, Any], settings: Settings,
                                               tmp_path: Path) -> None:
    s3, dynamodb = aws
    good = upload_catalog(s3, tmp_path)
    first = handler(load_event("s3_catalog_created.json"), LambdaContext())["results"][0]
    jobs = JobStore(dynamodb, settings.jobs_table)
    event = load_event("loader_direct.json")
    jobs.create(event["catalog_key"], job_id=event["job_id"])

    second = handler(event, LambdaContext())["results"][0]

    assert second["status"] == "succeeded"
    assert second["reused"] == good and second["embedded"] == 0
    assert second["version"] != first["version"]
    assert current(s3)["version"] == second["version"]
    assert jobs.get(event["job_id"]).result["version"] == second["version"]


def test_images_uploaded_next_to_a_catalog_do_not_start_loads(handler: Any, aws: tuple[Any, Any]) -> None:
    event = load_event("s3_catalog_created.json")
    event["Records"][0]["s3"]["object"]["key"] = "catalogs/spring+shop/images/dress-0000.jpg"

    assert handler(event, LambdaContext()) == {"results": []}
    assert current(aws[0]) is None


def test_redelivered_s3_event_is_skipped(handler: Any, aws: tuple[Any, Any], tmp_path: Path) -> None:
    upload_catalog(aws[0], tmp_path)
    event = load_event("s3_catalog_created.json")
    first = handler(event, LambdaContext())["results"][0]

    again = handler(event, LambdaContext())["results"][0]

    assert again == {"job_id": first["job_id"], "status": "skipped"}
    assert current(aws[0])["version"] == first["version"]


def test_catalog_without_a_loadable_product_fails_the_job_and_publishes_nothing(
        handler: Any, aws: tuple[Any, Any], settings: Settings) -> None:
    s3, dynamodb = aws
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "catalog.csv",
                  Body=b"id,title,category,image\na,A,dress,images/missing.jpg\n")

    outcome = handler(load_event("s3_catalog_created.json"), LambdaContext())["results"][0]

    assert outcome["status"] == "failed"
    assert "nothing was published" in outcome["error"]
    job = JobStore(dynamodb, settings.jobs_table).get(outcome["job_id"])
    assert job.status == "failed" and job.rejects[0]["product_id"] == "a"
    assert current(s3) is None


def test_direct_event_outside_catalogs_is_refused(handler: Any, aws: tuple[Any, Any]) -> None:
    from moodboard.errors import CatalogError

    with pytest.raises(CatalogError, match="not a catalog under catalogs/"):
        handler({"job_id": "j1", "catalog_key": "indexes/CURRENT"}, LambdaContext())


def test_zip_catalog_with_its_images_builds_and_publishes(handler: Any, aws: tuple[Any, Any], tmp_path: Path) -> None:
    import zipfile

    catalog = generate_demo_catalog(tmp_path / "zipped", per_category=2, categories=["hat", "bag"])
    archive = tmp_path / "shop.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in [catalog, *sorted((catalog.parent / "images").iterdir())]:
            zf.write(file, f"shop/{file.relative_to(catalog.parent)}")
    aws[0].upload_file(str(archive), BUCKET, "catalogs/shop.zip")
    event = load_event("s3_catalog_created.json")
    event["Records"][0]["s3"]["object"]["key"] = "catalogs/shop.zip"

    outcome = handler(event, LambdaContext())["results"][0]

    assert outcome["status"] == "succeeded", outcome
    assert outcome["loaded"] == 4 and outcome["categories"] == {"hat": 2, "bag": 2}
    assert current(aws[0])["version"] == outcome["version"]


def test_zip_with_a_member_escaping_its_folder_is_refused(handler: Any, aws: tuple[Any, Any], tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../outside.csv", "id,title,category,image\n")
    aws[0].upload_file(str(archive), BUCKET, "catalogs/evil.zip")

    outcome = handler({"job_id": "evil-1", "catalog_key": "catalogs/evil.zip"}, LambdaContext())["results"][0]

    assert outcome["status"] == "failed" and "outside its folder" in outcome["error"]
    assert current(aws[0]) is None


def _corrupt_zip(path: Path) -> None:
    path.write_bytes(b"PK\x03\x04 not really a zip")


def _file_and_folder_zip(path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("shop", "a file")
        zf.writestr("shop/catalog.csv", "id,title,category,image\n")


def _dangling_hard_link_tar(path: Path) -> None:
    import tarfile

    from tests.crafted_archives import add_tar

    with tarfile.open(path, "w") as tf:
        add_tar(tf, "catalog.csv", tarfile.LNKTYPE, linkname="elsewhere/catalog.csv")


def _zip_bomb(path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("catalog.csv", "id,title,category,image\n")
        zf.writestr("padding.bin", bytes(30 * 1024 * 1024))


@pytest.mark.parametrize("name, build, message", [
    ("corrupt.zip", _corrupt_zip, "corrupt.zip is not a readable zip archive (File is not a zip file)"),
    ("clash.zip", _file_and_folder_zip, "clash.zip holds a file and a folder both named 'shop'"),
    ("link.tar", _dangling_hard_link_tar, "link.tar holds a link ('catalog.csv' -> 'elsewhere/catalog.csv'); "
                                          "links are not allowed"),
    ("bomb.zip", _zip_bomb, "bomb.zip unpacks to more than 200 times its own size"),
])
def test_refused_archive_fails_the_job_with_a_one_line_reason(handler: Any, aws: tuple[Any, Any], settings: Settings,
                                                              tmp_path: Path, name: str, build: Any,
                                                              message: str) -> None:
    archive = tmp_path / name
    build(archive)
    aws[0].upload_file(str(archive), BUCKET, f"catalogs/{name}")

    outcome = handler({"job_id": f"bad-{name}", "catalog_key": f"catalogs/{name}"}, LambdaContext())["results"][0]

    assert outcome["status"] == "failed"
    assert outcome["error"].startswith(message) and "\n" not in outcome["error"]
    assert JobStore(aws[1], settings.jobs_table).get(f"bad-{name}").error == outcome["error"]
    assert current(aws[0]) is None
    assert not list((settings.cache_dir / "catalog-files").rglob("*.bin")), "nothing of the bomb stays on disk"


def test_realpath_overflow_tar_cannot_write_outside_the_catalog_folder(handler: Any, aws: tuple[Any, Any],
                                                                      settings: Settings, tmp_path: Path) -> None:
    import hashlib

    from tests.crafted_archives import realpath_overflow_tar, tree

    key = "catalogs/attack.tar"
    dest = settings.cache_dir / "catalog-files" / hashlib.sha256(key.encode()).hexdigest()[:16]
    dest.parent.mkdir(parents=True)
    (dest.parent / "flag").write_text("original")
    before = tree(settings.cache_dir, skip=dest)
    aws[0].upload_file(str(realpath_overflow_tar(tmp_path / "attack.tar", dest)), BUCKET, key)

    outcome = handler({"job_id": "attack-1", "catalog_key": key}, LambdaContext())["results"][0]

    assert (dest.parent / "flag").read_text() == "original", "the archive overwrote a file outside its folder"
    assert not (dest.parent / "newfile").exists()
    assert outcome["status"] == "failed" and "links are not allowed" in outcome["error"]
    after = tree(settings.cache_dir, skip=dest)
    assert {path: after.get(path) for path in before} == before
    assert set(after) - set(before) <= {str(settings.cache_dir / "work"), str(settings.cache_dir / ".loads.lock")}


def test_catalog_paths_outside_its_folder_are_rejected_without_telling_what_exists(
        handler: Any, aws: tuple[Any, Any], settings: Settings, tmp_path: Path) -> None:
    from PIL import Image

    s3, dynamodb = aws
    secret = tmp_path / "loader-disk" / "secret.png"
    secret.parent.mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(secret)
    good = upload_catalog(s3, tmp_path, extra_rows=[
        {"id": "abs-exists", "title": "x", "category": "dress", "image": str(secret)},
        {"id": "abs-missing", "title": "x", "category": "dress", "image": str(secret.with_name("nope.png"))},
        {"id": "file-url", "title": "x", "category": "dress", "image": f"file://{secret}"},
        {"id": "climb", "title": "x", "category": "dress", "image": "../../../../../../../../" + str(secret)},
        {"id": "home", "title": "x", "category": "dress", "image": "~/secret.png"},
        {"id": "script", "title": "x", "category": "dress", "image": "images/dress-0000.jpg",
         "product_url": "javascript:alert(document.cookie)"},
    ])

    outcome = handler(load_event("s3_catalog_created.json"), LambdaContext())["results"][0]

    assert outcome["status"] == "succeeded" and outcome["loaded"] == good
    job = JobStore(dynamodb, settings.jobs_table).get(outcome["job_id"])
    reasons = [reject["reason"] for reject in job.rejects]
    assert len(reasons) == 6 and not any("product_id" in reject for reject in job.rejects)
    assert reasons[0] == reasons[1] == "bad image: absolute paths are not allowed; give a path relative to the catalog"
    assert reasons[2].startswith("bad image: file:// URLs are not allowed")
    assert reasons[3] == "bad image: the path leaves the catalog's folder"
    assert reasons[4].startswith("bad image: '~' paths are not allowed")
    assert reasons[5] == "bad product_url: must be an http(s) URL"


def test_a_job_removes_what_dead_jobs_left_in_the_cache(handler: Any, aws: tuple[Any, Any], settings: Settings,
                                                         tmp_path: Path) -> None:
    cache = settings.cache_dir
    dead_work = cache / "work" / "load-s3-deadbeef-x1y2z3" / ".index.thumbs-123"
    dead_files = cache / "catalog-files" / "0123456789abcdef" / "images"
    for folder in (dead_work, dead_files):
        folder.mkdir(parents=True)
        (folder / "left.jpg").write_bytes(b"x" * 1000)
    (cache / "catalog-files" / ".0123456789abcdef-shop.zip").write_bytes(b"PK")  # its downloaded archive
    unrelated = cache / "indexes" / "keep-me"
    unrelated.mkdir(parents=True)
    (cache / "catalog-files" / "notes.txt").write_text("not a job's")
    upload_catalog(aws[0], tmp_path)

    outcome = handler(load_event("s3_catalog_created.json"), LambdaContext())["results"][0]

    assert outcome["status"] == "succeeded"
    assert list((cache / "work").iterdir()) == []
    assert [p.name for p in (cache / "catalog-files").iterdir()] == ["notes.txt"]
    assert unrelated.is_dir()


def test_a_job_leaves_the_folders_of_a_live_job_alone(handler: Any, aws: tuple[Any, Any], settings: Settings,
                                                       tmp_path: Path) -> None:
    import fcntl
    import os

    cache = settings.cache_dir
    live = cache / "work" / "load-live-job-abc123"
    live.mkdir(parents=True)
    fd = os.open(cache / ".loads.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_SH)  # what a running job holds
    try:
        upload_catalog(aws[0], tmp_path)
        outcome = handler(load_event("s3_catalog_created.json"), LambdaContext())["results"][0]
    finally:
        os.close(fd)

    assert outcome["status"] == "succeeded"
    assert live.is_dir()


def _lamps_dropped(s3: Any, tmp_path: Path) -> None:
    """The same catalog key again, without its lamps: half the products and a whole product type gone."""
    import csv

    folder = tmp_path / "smaller"
    catalog = generate_demo_catalog(folder, per_category=3, categories=["dress", "lamp"])
    with catalog.open() as fh:
        rows = [row for row in csv.DictReader(fh) if row["category"] != "lamp"]
    with catalog.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    s3.upload_file(str(catalog), BUCKET, PREFIX + "catalog.csv")


def test_s3_upload_of_a_destructive_catalog_fails_its_job_and_keeps_current(
        handler: Any, aws: tuple[Any, Any], settings: Settings, tmp_path: Path) -> None:
    s3, dynamodb = aws
    upload_catalog(s3, tmp_path)
    first = handler(load_event("s3_catalog_created.json"), LambdaContext())["results"][0]
    before = current(s3)
    _lamps_dropped(s3, tmp_path)
    event = load_event("s3_catalog_created.json")
    event["Records"][0]["s3"]["object"]["sequencer"] = "0A1B2C3D4E5F67890B"  # a new upload, not a redelivery

    outcome = handler(event, LambdaContext())["results"][0]

    assert first["status"] == "succeeded" and outcome["status"] == "failed"
    job = JobStore(dynamodb, settings.jobs_table).get(outcome["job_id"])
    assert job.status == "failed" and job.confirm is False
    assert job.error.startswith("this load would remove 50% of products (3 of 6) and the product type 'lamp'")
    assert "confirm=true (POST /admin/load) or --confirm" in job.error
    assert current(s3) == before


def test_a_confirmed_job_loads_the_destructive_catalog(handler: Any, aws: tuple[Any, Any], settings: Settings,
                                                       tmp_path: Path) -> None:
    s3, dynamodb = aws
    upload_catalog(s3, tmp_path)
    handler(load_event("s3_catalog_created.json"), LambdaContext())
    _lamps_dropped(s3, tmp_path)
    jobs = JobStore(dynamodb, settings.jobs_table)
    unconfirmed = jobs.create(PREFIX + "catalog.csv")
    confirmed = jobs.create(PREFIX + "catalog.csv", confirm=True)

    refused = handler({"job_id": unconfirmed.job_id, "catalog_key": PREFIX + "catalog.csv"}, LambdaContext())
    loaded = handler({"job_id": confirmed.job_id, "catalog_key": PREFIX + "catalog.csv"}, LambdaContext())

    assert refused["results"][0]["status"] == "failed"
    assert loaded["results"][0]["status"] == "succeeded" and loaded["results"][0]["loaded"] == 3
    assert current(s3)["version"] == loaded["results"][0]["version"]


def test_retention_runs_after_each_publish(handler: Any, aws: tuple[Any, Any], settings: Settings,
                                           tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from moodboard.index_versions import IndexVersions

    s3, dynamodb = aws
    keep = 2
    set_runtime(Runtime(settings.model_copy(update={"index_keep_versions": keep, "index_keep_days": 0}),
                        s3=s3, dynamodb=dynamodb, embedder=FakeEmbedder()))
    upload_catalog(s3, tmp_path)
    jobs = JobStore(dynamodb, settings.jobs_table)
    versions = []
    caplog.set_level("INFO", logger="moodboard")
    for n in range(keep + 2):
        if n:
            time.sleep(1.05)  # a version's `created` has second resolution: one second apart, "newest" is clear
        job = jobs.create(PREFIX + "catalog.csv")
        versions.append(handler({"job_id": job.job_id, "catalog_key": PREFIX + "catalog.csv"},
                                LambdaContext())["results"][0]["version"])

    listed = IndexVersions(ArtifactStore(BUCKET, s3)).list()
    assert [v.version for v in listed.items] == versions[::-1][:keep]
    assert listed.current == versions[-1] and listed.previous == versions[-2]
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix=f"indexes/{versions[0]}/").get("KeyCount")
    assert "retention removed index versions" in caplog.text


def test_a_failing_retention_never_fails_the_load(handler: Any, aws: tuple[Any, Any], settings: Settings,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from moodboard.errors import StoreError
    from moodboard.index_versions import IndexVersions

    def broken(self: Any, **_: Any) -> list[str]:
        raise StoreError("S3 failed to list indexes/")

    monkeypatch.setattr(IndexVersions, "prune", broken)
    upload_catalog(aws[0], tmp_path)

    outcome = handler(load_event("s3_catalog_created.json"), LambdaContext())["results"][0]

    assert outcome["status"] == "succeeded" and current(aws[0])["version"] == outcome["version"]
