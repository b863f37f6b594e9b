"""The dry run of a load: the diff against the served products, the confirmation rule, and
`moodboard load --dry-run` writing nothing."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from moodboard.archives import ArchiveLimits
from moodboard.artifacts import ArtifactStore
from moodboard.catalog import Product, read_catalog
from moodboard import team_routes
from moodboard.catalog_diff import (
    DRY_RUN_DIR,
    CatalogDiff,
    CatalogTooLargeForDryRun,
    NotDryRunnable,
    diff_catalog,
    dry_run_in_bucket,
)
from moodboard.errors import ArchiveError, CatalogError
from moodboard.load_staging import WORK_ROOT_LOCK
from moodboard.settings import Settings
from moodboard_local.cli import main

from tests.catalogs import BUCKET
from tests.indexes import build_index
from tests.unit.test_team_routes import BUCKET as TEAM_BUCKET
from tests.unit.test_team_routes import api, auth  # noqa: F401


def product(pid: str, category: str, *, title: str | None = None, image: str | None = None) -> Product:
    return Product(id=pid, title=title or f"Item {pid}", category=category,
                   image=image or f"https://shop.example/{pid}.jpg")


CURRENT = [product("a", "dress"), product("b", "dress"), product("c", "lamp"), product("d", "shoes"),
           product("e", "shoes")]


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("id,title,category,image\n" + "".join(row + "\n" for row in rows))
    return path


def test_diff_counts_added_removed_changed_and_categories(tmp_path: Path) -> None:
    catalog = write_csv(tmp_path / "c.csv", [
        "a,Item a,dress,https://shop.example/a.jpg",          # unchanged
        "b,New title,dress,https://shop.example/b.jpg",       # changed: title
        "c,Item c,lamp,https://shop.example/c2.jpg",          # changed: image
        "f,Item f,hat,https://shop.example/f.jpg",            # added, new category
        "g,,,",                                               # rejected (no category, no image)
    ])
    diff = diff_catalog(read_catalog(catalog), CURRENT, current_version="v1")
    assert (diff.before, diff.after, diff.added, diff.removed, diff.changed, diff.unchanged) == (5, 4, 1, 2, 2, 1)
    assert diff.added_ids == ["f"] and sorted(diff.removed_ids) == ["d", "e"]
    assert {c.id: c.fields for c in diff.changed_products} == {"b": ["title"], "c": ["image"]}
    assert diff.categories_gained == ["hat"] and diff.categories_lost == ["shoes"]
    assert diff.rejects_total == 1 and diff.rejects[0]["line"] == 6
    # 2 of 5 removed (40% > 10%) and a category lost: both reasons, confirmation needed
    assert diff.removed_share == 0.4 and diff.needs_confirmation and len(diff.reasons) == 2
    assert "shoes" in diff.reasons[1]


def test_small_change_needs_no_confirmation(tmp_path: Path) -> None:
    rows = [f"{p.id},{p.title},{p.category},{p.image}" for p in CURRENT] + ["z,Item z,lamp,https://shop.example/z.jpg"]
    diff = diff_catalog(read_catalog(write_csv(tmp_path / "c.csv", rows)), CURRENT)
    assert (diff.added, diff.removed, diff.changed, diff.needs_confirmation) == (1, 0, 0, False)


def test_removing_one_product_of_many_stays_under_the_share(tmp_path: Path) -> None:
    many = [product(f"p{i}", "dress") for i in range(20)]
    rows = [f"{p.id},{p.title},{p.category},{p.image}" for p in many[1:]]
    diff = diff_catalog(read_catalog(write_csv(tmp_path / "c.csv", rows)), many, max_removed_share=0.10)
    assert diff.removed == 1 and diff.removed_share == 0.05 and not diff.needs_confirmation


def test_local_images_compare_by_file_name(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    catalog = write_csv(tmp_path / "c.csv", ["a,Item a,dress,img/a.jpg"])
    current = [product("a", "dress", image="/elsewhere/unpacked/img/a.jpg")]
    assert diff_catalog(read_catalog(catalog), current).changed == 0


def test_cli_dry_run_prints_the_diff_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "index"
    vectors = np.eye(5, 8, dtype=np.float32)
    build_index(out, CURRENT, vectors, fingerprint="fake-fp")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    catalog = write_csv(tmp_path / "c.csv", ["a,Item a,dress,https://shop.example/a.jpg",
                                             "x,Item x,hat,https://shop.example/x.jpg"])
    assert main(["load", str(catalog), "--out", str(out), "--dry-run", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["added"], report["removed"], report["categories_lost"]) == (1, 4, ["dress", "lamp", "shoes"][1:])
    assert report["needs_confirmation"] is True
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert main(["load", str(catalog), "--out", str(tmp_path / "none"), "--dry-run"]) == 0
    assert "0 -> 2 products: 2 added" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()


def test_check_load_refuses_a_destructive_load_with_one_clear_line(tmp_path: Path) -> None:
    from moodboard.catalog_diff import check_load
    from moodboard.errors import LoadNeedsConfirmation

    catalog = read_catalog(write_csv(tmp_path / "c.csv", [f"{p.id},{p.title},{p.category},{p.image}"
                                                          for p in CURRENT if p.category != "lamp"][:3]))
    with pytest.raises(LoadNeedsConfirmation) as refused:
        check_load(catalog, CURRENT, confirm=False, max_removed_share=0.10)

    assert refused.value.message == ("this load would remove 40% of products (2 of 5) and the product type 'lamp'; "
                                     "nothing was published; confirm it with confirm=true (POST /admin/load) "
                                     "or --confirm")
    assert refused.value.details["categories_lost"] == ["lamp"]
    diff = check_load(catalog, CURRENT, confirm=True, max_removed_share=0.10)
    assert diff.needs_confirmation and diff.removed == 2


def test_check_load_lets_a_small_change_and_a_first_load_through(tmp_path: Path) -> None:
    from moodboard.catalog_diff import check_load

    rows = [f"{p.id},{p.title},{p.category},{p.image}" for p in CURRENT]
    catalog = read_catalog(write_csv(tmp_path / "c.csv", rows[1:]))  # 1 of 5 removed, no category lost
    assert check_load(catalog, CURRENT, confirm=False, max_removed_share=0.25).removed == 1
    assert check_load(catalog, None, confirm=False, max_removed_share=0.0).added == 4
    only_share = read_catalog(write_csv(tmp_path / "d.csv", [rows[0], rows[2], rows[4]]))  # dress, lamp, shoes kept
    from moodboard.errors import LoadNeedsConfirmation
    with pytest.raises(LoadNeedsConfirmation, match=r"^this load would remove 40% of products \(2 of 5\); nothing"):
        check_load(only_share, CURRENT, confirm=False, max_removed_share=0.10)


# --- the dry run of an archive catalog: unpacked as the loader unpacks it, diffed, removed after ----------

LIMITS = ArchiveLimits.from_settings(Settings())
# CURRENT as a load of an earlier archive left it: local images, by absolute paths of its unpacked folder
UNPACKED = [product(p.id, p.category, image=f"/tmp/moodboard/catalog-files/0123/images/{p.id}.jpg") for p in CURRENT]
ARCHIVE_CSV = (b"id,title,category,image\n"
               b"a,Item a,dress,images/a.jpg\n"       # unchanged
               b"b,Item b,dress,images/b2.jpg\n"      # changed: image
               b"c,Item c,lamp,images/c.jpg\n"        # its image is not in the archive: rejected, lamp lost
               b"f,Item f,hat,images/f.jpg\n"         # added, new category
               b"g,,,\n")                             # rejected row (line 6)
ARCHIVE_MEMBERS = [("spring/catalog.csv", ARCHIVE_CSV), ("spring/images/a.jpg", b"a"),
                   ("spring/images/b2.jpg", b"b"), ("spring/images/f.jpg", b"f")]


def make_archive(path: Path, members: list[tuple[str, bytes]]) -> Path:
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in members:
                zf.writestr(name, data)
        return path
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def assert_archive_diff(diff: CatalogDiff) -> None:
    assert (diff.before, diff.after, diff.added, diff.removed, diff.changed, diff.unchanged) == (5, 3, 1, 3, 1, 1)
    assert diff.added_ids == ["f"] and sorted(diff.removed_ids) == ["c", "d", "e"]
    assert {c.id: c.fields for c in diff.changed_products} == {"b": ["image"]}
    assert diff.categories_gained == ["hat"] and diff.categories_lost == ["lamp", "shoes"]
    assert diff.rejects == [
        {"line": 6, "reason": diff.rejects[0]["reason"]},
        {"product_id": "c", "image": "spring/images/c.jpg",
         "reason": "image file spring/images/c.jpg is not in the catalog's files; the load would skip it"}]
    assert "category" in str(diff.rejects[0]["reason"])
    assert (diff.rejects_total, diff.images_missing) == (2, 1)
    assert diff.needs_confirmation and diff.removed_share == 0.6
    assert diff.summary().endswith("2 rows rejected (1 for a missing image file); categories gained: hat; "
                                   "categories LOST: lamp, shoes")


def published_current(s3: Any, tmp_path: Path) -> tuple[ArtifactStore, str]:
    store = ArtifactStore(BUCKET, s3)
    build_index(tmp_path / "current", UNPACKED, np.eye(5, 8, dtype=np.float32), fingerprint="fake-fp")
    return store, store.publish(tmp_path / "current").version


def all_keys(s3: Any) -> list[str]:
    return sorted(obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


@pytest.mark.parametrize("name", ["spring.zip", "spring.tar.gz", "spring.tar"])
def test_dry_run_of_an_archive_in_the_bucket_diffs_it_and_publishes_nothing(moto_bucket: Any, tmp_path: Path,
                                                                            name: str) -> None:
    store, version = published_current(moto_bucket, tmp_path)
    key = f"uploads/catalogs/0123456789abcdef0123456789abcdef/{name}"
    moto_bucket.upload_file(str(make_archive(tmp_path / name, ARCHIVE_MEMBERS)), BUCKET, key)
    keys = all_keys(moto_bucket)
    cache = tmp_path / "cache"

    diff = dry_run_in_bucket(store, key, max_removed_share=0.10, limits=LIMITS, cache_dir=cache)

    assert diff.current_version == version
    assert_archive_diff(diff)
    assert store.current().version == version and all_keys(moto_bucket) == keys  # never publishes, writes nothing
    assert [p.name for p in (cache / DRY_RUN_DIR).iterdir()] == [WORK_ROOT_LOCK]  # its files are gone


def test_dry_run_of_an_archive_in_the_bucket_refuses_what_the_loader_refuses(moto_bucket: Any, tmp_path: Path) -> None:
    store, version = published_current(moto_bucket, tmp_path)
    cache = tmp_path / "cache"
    escape = make_archive(tmp_path / "escape.zip", [("catalog.csv", ARCHIVE_CSV), ("../evil.jpg", b"x")])
    moto_bucket.upload_file(str(escape), BUCKET, "catalogs/escape.zip")
    with pytest.raises(ArchiveError) as refused:
        dry_run_in_bucket(store, "catalogs/escape.zip", max_removed_share=0.1, limits=LIMITS, cache_dir=cache)
    assert refused.value.message == "the archive member '../evil.jpg' would be written outside its folder"

    moto_bucket.put_object(Bucket=BUCKET, Key="catalogs/broken.tar.gz", Body=b"not a tar at all")
    with pytest.raises(ArchiveError, match=r"^broken\.tar\.gz is not a readable tar archive"):
        dry_run_in_bucket(store, "catalogs/broken.tar.gz", max_removed_share=0.1, limits=LIMITS, cache_dir=cache)

    small = ArchiveLimits(max_bytes=10, max_member_bytes=10, max_members=10, max_ratio=200.0)
    moto_bucket.upload_file(str(make_archive(tmp_path / "big.zip", ARCHIVE_MEMBERS)), BUCKET, "catalogs/big.zip")
    with pytest.raises(ArchiveError, match=r"catalog\.csv' unpacks to more than 10 bytes"):
        dry_run_in_bucket(store, "catalogs/big.zip", max_removed_share=0.1, limits=small, cache_dir=cache)

    moto_bucket.upload_file(str(make_archive(tmp_path / "empty.zip", [("notes.txt", b"hi")])), BUCKET,
                            "catalogs/empty.zip")
    with pytest.raises(CatalogError, match="no catalog .* found in the uploaded folder or archive"):
        dry_run_in_bucket(store, "catalogs/empty.zip", max_removed_share=0.1, limits=LIMITS, cache_dir=cache)
    with pytest.raises(NotDryRunnable):
        dry_run_in_bucket(store, "catalogs/spring.rar", max_removed_share=0.1, limits=LIMITS, cache_dir=cache)
    assert store.current().version == version
    assert [p.name for p in (cache / DRY_RUN_DIR).iterdir()] == [WORK_ROOT_LOCK]


def test_a_dry_run_removes_what_a_killed_one_left(moto_bucket: Any, tmp_path: Path) -> None:
    store, _ = published_current(moto_bucket, tmp_path)
    moto_bucket.upload_file(str(make_archive(tmp_path / "a.zip", ARCHIVE_MEMBERS)), BUCKET, "catalogs/a.zip")
    left = tmp_path / "cache" / DRY_RUN_DIR / "dry-run-killed" / "catalog"
    left.mkdir(parents=True)
    (left / "big.jpg").write_bytes(b"x" * 100)
    dry_run_in_bucket(store, "catalogs/a.zip", max_removed_share=0.1, limits=LIMITS, cache_dir=tmp_path / "cache")
    assert not left.parent.exists()


def test_cli_dry_run_of_an_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOODBOARD_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "index"
    build_index(out, UNPACKED, np.eye(5, 8, dtype=np.float32), fingerprint="fake-fp")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    archive = make_archive(tmp_path / "spring.tar.gz", ARCHIVE_MEMBERS)

    assert main(["load", str(archive), "--out", str(out), "--dry-run", "--json"]) == 0
    assert_archive_diff(CatalogDiff.model_validate_json(capsys.readouterr().out))
    assert main(["load", str(archive), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr()
    assert "5 -> 3 products: 1 added, 3 removed, 1 changed, 1 unchanged; 2 rows rejected" in printed.out
    assert ("rejected product c: image file spring/images/c.jpg is not in the catalog's files; the load would "
            "skip it") in printed.err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert [p.name for p in (tmp_path / "cache" / DRY_RUN_DIR).iterdir()] == [WORK_ROOT_LOCK]

    # a refused archive: one line, exit code 2
    bad = make_archive(tmp_path / "links.zip", [("catalog.csv", ARCHIVE_CSV)])
    with zipfile.ZipFile(bad, "a") as zf:
        link = zipfile.ZipInfo("images/a.jpg")
        link.create_system = 3
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    assert main(["load", str(bad), "--out", str(out), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "links.zip holds a link ('images/a.jpg'); links are not allowed" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_dry_run_of_a_local_csv_rejects_missing_image_files(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"a")
    catalog = write_csv(tmp_path / "c.csv", ["a,Item a,dress,images/a.jpg", "b,Item b,dress,images/b.jpg"])
    assert main(["load", str(catalog), "--out", str(tmp_path / "none"), "--dry-run", "--json"]) == 0
    diff = CatalogDiff.model_validate_json(capsys.readouterr().out)
    assert (diff.after, diff.added_ids, diff.images_missing) == (1, ["a"], 1)
    assert diff.rejects[0]["product_id"] == "b" and diff.rejects[0]["image"] == "images/b.jpg"


def test_the_dry_run_route_reads_an_archive_and_answers_its_errors_plainly(api: Any, tmp_path: Path) -> None:  # noqa: F811
    client, tokens, s3 = api
    store = ArtifactStore(TEAM_BUCKET, s3)
    build_index(tmp_path / "current", UNPACKED, np.eye(5, 8, dtype=np.float32), fingerprint="fake-fp")
    version = store.publish(tmp_path / "current").version
    s3.upload_file(str(make_archive(tmp_path / "spring.zip", ARCHIVE_MEMBERS)), TEAM_BUCKET, "catalogs/spring.zip")
    carol = auth(tokens["carol"])  # an admin member: a dry run needs the admin role

    answer = client.post("/admin/load/dry-run", headers=carol, json={"catalog_key": "catalogs/spring.zip"})
    assert answer.status_code == 200, answer.text
    assert_archive_diff(CatalogDiff.model_validate(answer.json()))
    assert store.current().version == version

    s3.upload_file(str(make_archive(tmp_path / "escape.tar", [("catalog.csv", ARCHIVE_CSV), ("/etc/evil", b"x")])),
                   TEAM_BUCKET, "catalogs/escape.tar")
    refused = client.post("/admin/load/dry-run", headers=carol, json={"catalog_key": "catalogs/escape.tar"})
    assert refused.status_code == 400
    assert refused.json() == {"detail": "the archive member '/etc/evil' has an absolute path; it would be written "
                                        "outside its folder", "error": "ArchiveError"}
    missing = client.post("/admin/load/dry-run", headers=carol, json={"catalog_key": "catalogs/none.zip"})
    assert (missing.status_code, missing.json()["detail"]) == (404, "no catalog at 'catalogs/none.zip' in the "
                                                                    "artifacts bucket")
    assert store.current().version == version


def test_a_catalog_too_large_for_a_dry_run_says_its_size_and_the_limit(api: Any, tmp_path: Path,  # noqa: F811
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Like every size-limit 413 (ImageTooLarge, FetchTooLarge, RequestTooLarge): details bytes and
    max_bytes, which the web page words its message from."""
    client, tokens, s3 = api
    store = ArtifactStore(TEAM_BUCKET, s3)
    body = "id,title,category,image\n" + "".join(f"p{i},Lamp {i},lamp,img/p{i}.jpg\n" for i in range(3))
    s3.put_object(Bucket=TEAM_BUCKET, Key="catalogs/next.csv", Body=body.encode())
    size = len(body.encode())
    with pytest.raises(CatalogTooLargeForDryRun) as refused:
        dry_run_in_bucket(store, "catalogs/next.csv", max_removed_share=0.1, max_bytes=10, limits=LIMITS,
                          cache_dir=tmp_path / "cache")
    assert refused.value.status_code == 413
    assert refused.value.details == {"bytes": size, "max_bytes": 10}

    monkeypatch.setattr(team_routes, "dry_run_in_bucket", partial(dry_run_in_bucket, max_bytes=10))
    carol = auth(tokens["carol"])  # an admin member: a dry run needs the admin role
    answer = client.post("/admin/load/dry-run", headers=carol, json={"catalog_key": "catalogs/next.csv"})
    assert answer.status_code == 413
    assert answer.json() == {"detail": f"catalogs/next.csv is {size} bytes; a dry run reads at most 10",
                             "error": "CatalogTooLargeForDryRun", "bytes": size, "max_bytes": 10}
