"""The catalog-load page's upload (issue 13 item 5): a CSV catalog chosen in the page goes to the
bucket through a presigned S3 POST (the embedded moto server, whose flask-cors answers any origin:
a multipart POST needs no preflight), lands under uploads/catalogs/ without starting a load, is
dry-run, then loaded with the confirmation. Runs its own `moodboard serve` (test_evaluation_rounds' stack fixture)."""

from __future__ import annotations

import re
from pathlib import Path

import boto3
import httpx
from playwright.sync_api import Browser, expect

from tests.browser.support import ADMIN_TOKEN, CATEGORY, DESKTOP
from tests.browser.test_accessibility import assert_no_violations
from tests.browser.test_evaluation_rounds import Stack, open_page, sign_in_as, stack, wait_for_version  # noqa: F401

BUCKET = "moodboard-local-artifacts"


def test_upload_a_csv_from_the_page_then_dry_run_and_load_it(browser: Browser, stack: Stack,  # noqa: F811
                                                              image_server: str, tmp_path: Path) -> None:
    with stack.client() as admin:
        before = admin.get("/admin/indexes").json()["current"]
    catalog = tmp_path / "spring sale.csv"
    catalog.write_text("id,title,category,image,price\n"
                       f"up-1,Ocean dress,{CATEGORY},{image_server}/mood.jpg,10\n"
                       f"up-2,Pastel dress,{CATEGORY},{image_server}/mood.png,12\n"
                       f"up-3,Wide dress,{CATEGORY},{image_server}/wide.jpg,14\n"
                       f",No id,{CATEGORY},{image_server}/mood.jpg,1\n")
    s3 = boto3.client("s3", endpoint_url=stack.moto, region_name="us-east-1",
                      aws_access_key_id="moto-local", aws_secret_access_key="moto-local")

    context, page, errors = open_page(browser, DESKTOP)
    try:
        sign_in_as(page, stack, "alice", "load")
        # not a catalog: refused in the page, nothing asked of the API
        (tmp_path / "notes.txt").write_text("not a catalog\n")
        page.get_by_label("Catalog file").set_input_files(tmp_path / "notes.txt")
        page.get_by_role("button", name="Upload and dry run").click()
        expect(page.locator("#team-error")).to_contain_text("Choose a catalog file")

        page.get_by_label("Catalog file").set_input_files(catalog)
        page.get_by_role("button", name="Upload and dry run").click()
        key_input = page.get_by_label("Catalog key in the bucket")
        expect(key_input).to_have_value(re.compile(r"^uploads/catalogs/[0-9a-f]{32}/spring-sale\.csv$"))
        key = key_input.input_value()
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == catalog.read_bytes()
        expect(page.locator("#diff-stats")).to_contain_text("→ 3")
        expect(page.locator("#diff-rejects")).to_contain_text("id")
        expect(page.locator("#team-error")).to_be_hidden()
        with stack.client() as admin:
            assert admin.get("/admin/indexes").json()["current"] == before  # the upload loaded nothing
        assert_no_violations(page, "an uploaded catalog's dry run")

        start = page.get_by_role("button", name="Load and publish")
        confirm = page.get_by_label("I understand what this load removes; publish it anyway")
        if confirm.is_visible():
            confirm.check()
        start.click()
        expect(page.locator("#job-status")).to_contain_text("succeeded", timeout=120_000)
        expect(page.locator("#job-status")).to_contain_text("published with 3 products")
        with stack.client() as admin:
            loaded = admin.get("/admin/indexes").json()["current"]
            assert loaded != before
        wait_for_version(stack, loaded)
        assert httpx.get(f"{stack.url}/version", timeout=10).json()["index"]["count"] == 3
        assert errors == []
    finally:
        context.close()

    # the API refuses an oversized or foreign upload plainly
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30) as admin:
        assert admin.post("/admin/catalog-uploads", json={"filename": "x.exe", "size": 5}).status_code == 422
        assert admin.post("/admin/catalog-uploads", json={"filename": "x.csv", "size": 10**13}).status_code == 413
