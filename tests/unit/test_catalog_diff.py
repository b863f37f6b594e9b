"""The dry run of a load: the diff against the served products, the confirmation rule, and
`moodboard load --dry-run` writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from moodboard.catalog import Product, read_catalog
from moodboard.catalog_diff import diff_catalog
from moodboard_local.cli import main

from tests.indexes import build_index


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
