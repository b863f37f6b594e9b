"""POST /admin/catalog-uploads against moto: a presigned POST under uploads/catalogs/ (which the S3
trigger does not watch) with S3's content-length-range; bad names 422, too large 413, admins only;
the uploaded file is then dry-run-able and loadable (moodboard.catalog_uploads.CATALOG_KEY_PREFIXES)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3.util.connection
from moodboard.artifacts import ArtifactStore
from moodboard.catalog_uploads import UPLOAD_PREFIX, BadUploadName, safe_name
from moodboard.loading import is_catalog_key

from tests.unit.test_artifacts import make_bundle
from tests.unit.test_team_routes import ADMIN, BUCKET, api, auth  # noqa: F401

LIMIT = 1024 * 1024 * 1024  # Settings.catalog_upload_max_bytes' default


def test_presigned_post_is_for_one_key_under_the_uploads_prefix_with_a_size_range(api: Any) -> None:
    client, tokens, _ = api
    answer = client.post("/admin/catalog-uploads", headers=auth(tokens["carol"]),  # an admin member
                         json={"filename": "C:\\team\\spring sale.csv", "size": 120})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    key = body["catalog_key"]
    assert key.startswith(UPLOAD_PREFIX) and key.endswith("/spring-sale.csv") and not key.startswith("catalogs/")
    assert body["fields"]["key"] == key and body["max_bytes"] == LIMIT and body["expires_in"] <= 900
    policy = json.loads(__import__("base64").b64decode(body["fields"]["policy"]))
    assert ["content-length-range", 1, LIMIT] in policy["conditions"]
    assert {"key": key} in policy["conditions"] and {"bucket": BUCKET} in policy["conditions"]
    assert is_catalog_key(key)


def test_an_uploaded_catalog_dry_runs_from_the_uploads_prefix(api: Any, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    client, tokens, s3 = api

    def no_socket(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"the upload left the process: {args[:1]}")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", no_socket)  # moto answers in-process
    store = ArtifactStore(BUCKET, s3)
    current = store.publish(make_bundle(tmp_path / "a", seed=1, n=6)).version
    csv = b"id,title,category,image,price\np0,Product 0,lamp,https://img.example/0.jpg,1\n"
    carol = auth(tokens["carol"])  # an admin member
    upload = client.post("/admin/catalog-uploads", headers=carol,
                         json={"filename": "next.csv", "size": len(csv)}).json()
    posted = requests.post(upload["url"], data=upload["fields"], files={"file": ("next.csv", csv)}, timeout=10)
    assert posted.status_code in (200, 201, 204), posted.text
    assert s3.get_object(Bucket=BUCKET, Key=upload["catalog_key"])["Body"].read() == csv
    diff = client.post("/admin/load/dry-run", headers=carol, json={"catalog_key": upload["catalog_key"]})
    assert diff.status_code == 200, diff.text
    assert (diff.json()["before"], diff.json()["after"]) == (6, 1)
    assert store.current().version == current


@pytest.mark.parametrize("filename", ["notes.txt", "catalog.csv.exe", "evil.html", ".csv", "archive.rar"])
def test_a_name_that_is_not_a_catalog_is_422(api: Any, filename: str) -> None:
    client, tokens, _ = api
    answer = client.post("/admin/catalog-uploads", headers=auth(ADMIN), json={"filename": filename, "size": 10})
    assert answer.status_code == 422, answer.text
    assert ".csv" in answer.text


def test_an_upload_over_the_limit_is_413(api: Any) -> None:
    client, tokens, _ = api
    answer = client.post("/admin/catalog-uploads", headers=auth(ADMIN),
                         json={"filename": "big.tar.gz", "size": LIMIT + 1})
    assert answer.status_code == 413, answer.text
    assert str(LIMIT) in answer.text
    body = answer.json()  # like every size-limit 413: the size asked for and the limit
    assert (body["error"], body["bytes"], body["max_bytes"]) == ("UploadTooLarge", LIMIT + 1, LIMIT)
    assert client.post("/admin/catalog-uploads", headers=auth(ADMIN),
                       json={"filename": "big.tar.gz", "size": LIMIT}).status_code == 200


def test_only_the_team_may_ask_for_an_upload(api: Any) -> None:
    client, _, _ = api
    body = {"filename": "next.csv", "size": 10}
    assert client.post("/admin/catalog-uploads", json=body).status_code == 401
    assert client.post("/admin/catalog-uploads", json=body, headers=auth("not-a-token")).status_code in (401, 403)


def test_safe_name_keeps_archives_and_strips_paths() -> None:
    assert safe_name("../../x/shop.TAR.GZ") == "shop.TAR.GZ"
    assert safe_name("a b;c.jsonl") == "a-b-c.jsonl"
    with pytest.raises(BadUploadName):
        safe_name("../../")
