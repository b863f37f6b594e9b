"""Catalog readers: CSV, JSONL, the clothing-dataset layout, bad rows, duplicates, content keys."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import pytest
from moodboard.catalog import Product, image_content_key, read_catalog
from moodboard.errors import CatalogError
from moodboard_local.demo_catalog import generate_demo_catalog
from pydantic import ValidationError

HEADER = "id,title,category,image,product_url,price,currency,palette\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_reads_fields_and_extra_columns_into_attributes(tmp_path: Path) -> None:
    catalog = write(tmp_path / "shop.csv", HEADER +
                    "d1,Red dress,Dress,images/d1.jpg,https://shop.example/d1,49.90,eur,pastel\n"
                    "l1,,Lamp,https://cdn.example/l1.jpg,,,,\n")
    read = read_catalog(catalog)
    assert read.rejects == [] and read.duplicates == []
    dress, lamp = read.products
    assert dress == Product(id="d1", title="Red dress", category="Dress", image=str(tmp_path / "images" / "d1.jpg"),
                            product_url="https://shop.example/d1", price=49.9, currency="EUR",
                            attributes={"palette": "pastel"})
    assert lamp.image == "https://cdn.example/l1.jpg"
    assert lamp.title == "l1" and lamp.price is None and lamp.currency is None and lamp.attributes == {}
    assert read.format == "csv"
    assert read.summary() == "loaded 2, rejected 0 (duplicates 0)"


def test_csv_checksum_is_sha256_of_the_file(tmp_path: Path) -> None:
    catalog = write(tmp_path / "shop.csv", HEADER + "d1,Dress,Dress,a.jpg,,,,\n")
    assert read_catalog(catalog).checksum == hashlib.sha256(catalog.read_bytes()).hexdigest()


def test_csv_bad_rows_are_rejected_with_line_and_reason(tmp_path: Path) -> None:
    catalog = write(tmp_path / "shop.csv", HEADER +
                    "ok1,Fine,Dress,a.jpg,,10,EUR,x\n"           # line 2
                    ",No id,Dress,a.jpg,,10,EUR,x\n"             # line 3
                    "c1,No category,,a.jpg,,10,EUR,x\n"          # line 4
                    "i1,No image,Dress,  ,,10,EUR,x\n"           # line 5
                    "p1,Bad price,Dress,a.jpg,,ten,EUR,x\n"      # line 6
                    "p2,Negative,Dress,a.jpg,,-3,EUR,x\n"        # line 7
                    "cur,Bad currency,Dress,a.jpg,,3,EURO,x\n"   # line 8
                    "w1,Too many,Dress,a.jpg,,3,EUR,x,extra\n"   # line 9
                    "\n"                                         # line 10: blank, skipped
                    "s3,Scheme,Dress,s3://bucket/a.jpg,,,,\n"    # line 11
                    '"q1","Multi\nline title",Dress,a.jpg,,,,\n'  # lines 12-13
                    "w2,Too few,Dress\n"                         # line 14
                    "ok2,Fine,Lamp,b.jpg,,,,\n")                  # line 15
    read = read_catalog(catalog)
    assert [p.id for p in read.products] == ["ok1", "q1", "ok2"]
    assert read.products[1].title == "Multi\nline title"
    reasons = {reject.line: reject.reason for reject in read.rejects}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9, 11, 14]
    assert reasons[3] == "missing id"
    assert reasons[4] == "missing category"
    assert reasons[5] == "missing image"
    assert reasons[6] == "bad price: 'ten' is not a number"
    assert reasons[7] == "bad price: '-3' is negative"
    assert reasons[8] == "bad currency: 'EURO' is not a 3-letter code"
    assert reasons[9] == "wrong column count: expected 8, got 9"
    assert reasons[11].startswith("bad image: unsupported scheme 's3'")
    assert reasons[14] == "wrong column count: expected 8, got 3"
    assert read.summary() == "loaded 3, rejected 9 (duplicates 0)"


def test_csv_duplicate_ids_last_one_wins_and_are_reported(tmp_path: Path) -> None:
    catalog = write(tmp_path / "shop.csv", HEADER +
                    "d1,First,Dress,a.jpg,,,,\n"
                    "d2,Other,Dress,b.jpg,,,,\n"
                    "d1,Second,Dress,c.jpg,,,,\n"
                    "d1,Third,Skirt,d.jpg,,,,\n")
    read = read_catalog(catalog)
    assert read.duplicates == ["d1"]
    by_id = {p.id: p for p in read.products}
    assert len(read.products) == 2
    assert by_id["d1"].title == "Third" and by_id["d1"].category == "Skirt"
    assert read.summary() == "loaded 2, rejected 0 (duplicates 1)"


def test_csv_without_a_required_column_is_a_catalog_error(tmp_path: Path) -> None:
    catalog = write(tmp_path / "shop.csv", "id,title,image\nd1,Dress,a.jpg\n")
    with pytest.raises(CatalogError, match="no 'category' column"):
        read_catalog(catalog)


def test_csv_header_is_case_insensitive_and_bom_tolerant(tmp_path: Path) -> None:
    catalog = tmp_path / "shop.csv"
    catalog.write_bytes("\ufeffID,Title,Category,Image,Brand\nd1,Dress,Dress,a.jpg,Acme\n".encode())
    (product,) = read_catalog(catalog).products
    assert product.id == "d1" and product.attributes == {"Brand": "Acme"}


def test_jsonl_reads_products_and_rejects_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "j1", "title": "Lamp", "category": "Lamp", "image": "imgs/j1.png", "price": 12,
                    "currency": "usd", "attributes": {"room": "bedroom"}, "brand": "Acme"}),  # line 1
        "{not json",                                                                        # line 2
        "",                                                                                 # line 3
        json.dumps(["a", "list"]),                                                          # line 4
        json.dumps({"id": "j2", "category": "Lamp"}),                                       # line 5
        json.dumps({"id": "j3", "category": "Lamp", "image": "x.jpg", "price": "free"}),    # line 6
        json.dumps({"id": 7, "category": "Lamp", "image": "https://cdn.example/7.jpg"}),    # line 7
    ]
    catalog = write(tmp_path / "shop.jsonl", "\n".join(lines) + "\n")
    read = read_catalog(catalog)
    first, numeric = read.products
    assert first.image == str(tmp_path / "imgs" / "j1.png")
    assert first.currency == "USD" and first.price == 12.0
    assert first.attributes == {"room": "bedroom", "brand": "Acme"}
    assert numeric.id == "7"
    reasons = {reject.line: reject.reason for reject in read.rejects}
    assert sorted(reasons) == [2, 4, 5, 6]
    assert reasons[2].startswith("bad JSON")
    assert reasons[4] == "bad JSON: expected an object, got list"
    assert reasons[5] == "missing image"
    assert reasons[6] == "bad price: 'free' is not a number"
    assert read.format == "jsonl"


def test_ndjson_suffix_is_read_as_jsonl(tmp_path: Path) -> None:
    catalog = write(tmp_path / "shop.ndjson", json.dumps({"id": "a", "category": "Hat", "image": "a.jpg"}) + "\n")
    assert [p.id for p in read_catalog(catalog).products] == ["a"]


def make_clothing_folder(root: Path, rows: list[list[str]]) -> Path:
    (root / "images").mkdir(parents=True)
    with (root / "images.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "sender_id", "label", "kids"])
        writer.writerows(rows)
    for row in rows:
        if row and row[0]:
            (root / "images" / f"{row[0]}.jpg").write_bytes(b"jpeg")
    return root


def test_clothing_dataset_layout(tmp_path: Path) -> None:
    folder = make_clothing_folder(tmp_path / "clothing", [
        ["4285fab0-751a-4b74-8e9b-43af05deee22", "124", "T-Shirt", "False"],
        ["ea7b6656-3f84-4eb3-9099-23e623fc1018", "148", "Dress", "True"],
        ["", "12", "Dress", "False"],                               # line 4: no image id
        ["00627a3f-0477-401c-95eb-92642cbe078d", "94", "", "False"],  # line 5: no label
        ["short", "1"],                                             # line 6
    ])
    read = read_catalog(folder)
    tee, dress = read.products
    assert tee.id == "4285fab0-751a-4b74-8e9b-43af05deee22"
    assert tee.title == "T-Shirt 4285fab0"
    assert tee.category == "T-Shirt"
    assert tee.image == str(folder / "images" / f"{tee.id}.jpg")
    assert Path(tee.image).is_file()
    assert tee.attributes == {"sender_id": "124", "kids": False}
    assert dress.attributes["kids"] is True
    assert [(r.line, r.reason) for r in read.rejects] == [
        (4, "missing id"), (5, "missing category"), (6, "wrong column count: expected 4, got 2")]
    assert read.format == "clothing-dataset"
    assert read.checksum == hashlib.sha256((folder / "images.csv").read_bytes()).hexdigest()


def test_folder_without_images_csv_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="without images.csv"):
        read_catalog(tmp_path)


def test_unknown_suffix_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot tell the catalog format"):
        read_catalog(write(tmp_path / "shop.xlsx", "x"))


def test_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read catalog"):
        read_catalog(tmp_path / "nope.csv")


def test_demo_catalog_reads_cleanly(tmp_path: Path) -> None:
    catalog = generate_demo_catalog(tmp_path, per_category=2, categories=["dress", "lamp"])
    read = read_catalog(catalog)
    assert read.rejects == []
    assert len(read.products) == 4
    assert all(Path(p.image).is_file() for p in read.products)
    assert {p.attributes["palette"] for p in read.products} <= {"pastel", "earthy", "neon", "monochrome", "ocean"}


def test_product_rejects_negative_price_and_bad_currency() -> None:
    with pytest.raises(ValidationError):
        Product(id="a", title="a", category="c", image="/a.jpg", price=-1)
    with pytest.raises(ValidationError):
        Product(id="a", title="a", category="c", image="/a.jpg", currency="euro")


def test_image_content_key_for_url_is_the_url() -> None:
    product = Product(id="a", title="a", category="c", image="https://cdn.example/a.jpg?v=2")
    assert image_content_key(product) == "https://cdn.example/a.jpg?v=2"


def test_image_content_key_changes_when_a_local_file_is_replaced(tmp_path: Path) -> None:
    image = tmp_path / "a.jpg"
    image.write_bytes(b"one")
    product = Product(id="a", title="a", category="c", image=str(image))
    first = image_content_key(product)
    assert first == image_content_key(product)
    image.write_bytes(b"two")  # same size: only mtime tells
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = image_content_key(product)
    assert second != first
    image.write_bytes(b"longer")
    assert image_content_key(product) not in (first, second)
    image.unlink()
    assert image_content_key(product).endswith(":missing")


def test_one_field_over_the_limit_rejects_its_row_not_the_catalog(tmp_path: Path) -> None:
    from moodboard.catalog import MAX_FIELD_CHARS

    long_title = "x" * (MAX_FIELD_CHARS + 1)
    long_quoted = "line\n" * (MAX_FIELD_CHARS // 4)  # a quoted field over the limit that spans many lines
    catalog = write(tmp_path / "shop.csv", HEADER +
                    "a,Fine,Dress,a.jpg,,,,\n"                       # line 2
                    f"b,{long_title},Dress,b.jpg,,,,\n"              # line 3
                    f'c,"{long_quoted}",Dress,c.jpg,,,,\n'           # lines 4..
                    "d,Also fine,Dress,d.jpg,,,,\n")
    read = read_catalog(catalog)
    assert [p.id for p in read.products] == ["a", "d"]
    assert [(r.line, r.reason) for r in read.rejects] == [
        (3, f"bad title: longer than {MAX_FIELD_CHARS} characters"),
        (4, f"bad title: longer than {MAX_FIELD_CHARS} characters"),
    ]
    big_but_allowed = write(tmp_path / "ok.csv", HEADER + f"e,{'y' * MAX_FIELD_CHARS},Dress,e.jpg,,,,\n")
    assert [p.id for p in read_catalog(big_but_allowed).products] == ["e"]


def test_jsonl_field_over_the_limit_rejects_its_row(tmp_path: Path) -> None:
    from moodboard.catalog import MAX_FIELD_CHARS

    catalog = write(tmp_path / "shop.jsonl", "\n".join([
        json.dumps({"id": "a", "category": "Hat", "image": "a.jpg", "notes": "n" * (MAX_FIELD_CHARS + 1)}),
        json.dumps({"id": "b", "category": "Hat", "image": "b.jpg"}),
    ]) + "\n")
    read = read_catalog(catalog)
    assert [p.id for p in read.products] == ["b"]
    assert [(r.line, r.reason) for r in read.rejects] == [(1, f"bad notes: longer than {MAX_FIELD_CHARS} characters")]


OUTSIDE_PATHS = {
    "/etc/hostname": "bad image: absolute paths are not allowed; give a path relative to the catalog",
    "~/.ssh/id_rsa": "bad image: '~' paths are not allowed; give a path relative to the catalog",
    "~root/x.jpg": "bad image: '~' paths are not allowed; give a path relative to the catalog",
    "../outside.jpg": "bad image: the path leaves the catalog's folder",
    "images/../../outside.jpg": "bad image: the path leaves the catalog's folder",
    ".": "bad image: the path leaves the catalog's folder",
    "file:///etc/hostname": "bad image: file:// URLs are not allowed; give a path relative to the catalog",
    "FILE://images/a.jpg": "bad image: file:// URLs are not allowed; give a path relative to the catalog",
    "C:\\Windows\\a.jpg": "bad image: absolute paths are not allowed; give a path relative to the catalog",
    "\\\\server\\share\\a.jpg": "bad image: absolute paths are not allowed; give a path relative to the catalog",
}


@pytest.mark.parametrize("image, reason", list(OUTSIDE_PATHS.items()))
def test_image_paths_outside_the_catalog_folder_are_rejected(tmp_path: Path, image: str, reason: str) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    catalog = write(folder / "shop.jsonl", json.dumps({"id": "x", "category": "Hat", "image": image}) + "\n"
                    + json.dumps({"id": "ok", "category": "Hat", "image": "images/../images/a.jpg"}) + "\n")
    read = read_catalog(catalog)
    assert [(r.line, r.reason) for r in read.rejects] == [(1, reason)]
    assert [p.image for p in read.products] == [str(folder.resolve() / "images" / "a.jpg")]


def test_outside_path_rejects_read_the_same_whether_the_file_exists_or_not(tmp_path: Path) -> None:
    (tmp_path / "exists.jpg").write_bytes(b"jpeg")
    folder = tmp_path / "shop"
    folder.mkdir()
    catalog = write(folder / "shop.csv", HEADER +
                    f"a,A,Hat,{tmp_path / 'exists.jpg'},,,,\n"
                    f"b,B,Hat,{tmp_path / 'missing.jpg'},,,,\n"
                    "c,C,Hat,../exists.jpg,,,,\n"
                    "d,D,Hat,../missing.jpg,,,,\n")
    reasons = [r.reason for r in read_catalog(catalog).rejects]
    assert reasons[0] == reasons[1] and reasons[2] == reasons[3] and len(reasons) == 4


@pytest.mark.parametrize("url", ["javascript:alert(document.cookie)", "JaVaScRiPt:alert(1)", " javascript:alert(1)",
                                 "\x01javascript:alert(1)", "data:text/html,<script>alert(1)</script>",
                                 "vbscript:msgbox", "//evil.example/x", "/relative/page", "ftp://shop.example/x",
                                 "https://", "http:///path-only", "https://shop.example/\x00x"])
def test_product_url_must_be_http_or_https(tmp_path: Path, url: str) -> None:
    catalog = write(tmp_path / "shop.jsonl", json.dumps({"id": "x", "category": "Hat", "image": "a.jpg",
                                                         "product_url": url}) + "\n")
    read = read_catalog(catalog)
    assert read.products == []
    assert [(r.line, r.reason) for r in read.rejects] == [(1, "bad product_url: must be an http(s) URL")]


def test_http_and_https_product_urls_are_kept(tmp_path: Path) -> None:
    catalog = write(tmp_path / "shop.csv", HEADER +
                    "a,A,Hat,a.jpg,https://shop.example/a?x=1,,,\n"
                    "b,B,Hat,b.jpg,HTTP://shop.example/b,,,\n")
    assert [p.product_url for p in read_catalog(catalog).products] == ["https://shop.example/a?x=1",
                                                                      "HTTP://shop.example/b"]
