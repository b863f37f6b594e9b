"""The local data folder: moto's S3 and DynamoDB saved and found again after a restart, a stable
admin token, and an unreadable state file set aside rather than lost."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from moodboard import aws
from moodboard.settings import Settings
from moodboard_local.local_data import LocalData
from moodboard_local.local_stack import MOTO_CREDENTIALS, ensure_resources, start_local_aws
from moto.backends import get_backend


def forget_moto() -> None:
    """What a new process starts with: empty moto backends."""
    for service in ("s3", "dynamodb"):
        get_backend(service).reset()


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in MOTO_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    forget_moto()
    yield
    forget_moto()


def start(tmp_path: Path, data: LocalData) -> tuple[object, Settings]:
    settings = Settings(artifacts_bucket="moodboard-local-test", cache_dir=data.cache_dir)
    stack = start_local_aws(settings, "moto", state_dir=data.state_dir)
    return stack, settings.model_copy(update={"aws_endpoint_url": stack.endpoint_url})


def test_s3_and_dynamodb_survive_a_restart(tmp_path: Path) -> None:
    data = LocalData(tmp_path / "data")
    stack, settings = start(tmp_path, data)
    try:
        s3, dynamodb = aws.client("s3", settings), aws.client("dynamodb", settings)
        ensure_resources(settings, s3, dynamodb)
        s3.put_object(Bucket=settings.artifacts_bucket, Key="indexes/CURRENT", Body=b'{"version": "v1"}')
        dynamodb.put_item(TableName=settings.jobs_table, Item={"job_id": {"S": "j1"}, "status": {"S": "queued"}})
        assert "data kept in" in stack.describe()
    finally:
        stack.stop()
    forget_moto()

    stack, settings = start(tmp_path, data)
    try:
        s3, dynamodb = aws.client("s3", settings), aws.client("dynamodb", settings)
        body = s3.get_object(Bucket=settings.artifacts_bucket, Key="indexes/CURRENT")["Body"].read()
        assert body == b'{"version": "v1"}'
        item = dynamodb.get_item(TableName=settings.jobs_table, Key={"job_id": {"S": "j1"}})["Item"]
        assert item["status"] == {"S": "queued"}
    finally:
        stack.stop()
    for name in ("s3.pickle", "dynamodb.pickle"):
        assert stat.S_IMODE((data.state_dir / name).stat().st_mode) == 0o600


def test_without_a_data_folder_nothing_is_kept(tmp_path: Path) -> None:
    settings = Settings(artifacts_bucket="moodboard-local-test", cache_dir=tmp_path / "cache")
    stack = start_local_aws(settings, "moto")
    try:
        settings = settings.model_copy(update={"aws_endpoint_url": stack.endpoint_url})
        ensure_resources(settings, aws.client("s3", settings), aws.client("dynamodb", settings))
        assert "lives until the server stops" in stack.describe()
    finally:
        stack.stop()
    assert not (tmp_path / "moto-state").exists()


def test_unreadable_state_is_set_aside_and_the_server_starts_empty(tmp_path: Path) -> None:
    data = LocalData(tmp_path / "data")
    data.state_dir.mkdir(parents=True)
    (data.state_dir / "dynamodb.pickle").write_bytes(b"not a pickle")
    stack, settings = start(tmp_path, data)
    try:
        assert aws.client("dynamodb", settings).list_tables()["TableNames"] == []
    finally:
        stack.stop()
    aside = [p.name for p in data.state_dir.iterdir() if ".unreadable-" in p.name]
    assert len(aside) == 1 and (data.state_dir / aside[0]).read_bytes() == b"not a pickle"


def test_admin_token_is_made_once_and_kept(tmp_path: Path) -> None:
    token, made = LocalData(tmp_path / "d").admin_token()
    again, made_again = LocalData(tmp_path / "d").admin_token()
    assert made and not made_again and token == again and len(token) >= 24
    assert stat.S_IMODE((tmp_path / "d" / "admin-token").stat().st_mode) == 0o600


def test_bundle_check_still_refuses_files_reached_through_links(tmp_path: Path) -> None:
    # integrity resolves each folder once now (the kept index loads in under 5 s); links still count.
    import hashlib

    from moodboard.errors import BundleError
    from moodboard.integrity import verify_files

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.jpg").write_bytes(b"x")
    bundle = tmp_path / "bundle"
    (bundle / "thumbs").mkdir(parents=True)
    (bundle / "thumbs" / "ok.jpg").write_bytes(b"x")
    (bundle / "linked").symlink_to(outside)
    (bundle / "thumbs" / "file-link.jpg").symlink_to(outside / "a.jpg")
    digest = hashlib.sha256(b"x").hexdigest()
    assert verify_files(bundle, {"thumbs/ok.jpg": digest}, label="b") == 1
    for name in ("linked/a.jpg", "thumbs/file-link.jpg", "thumbs/../../outside/a.jpg"):
        with pytest.raises(BundleError, match="is missing"):
            verify_files(bundle, {name: digest}, label="b")
