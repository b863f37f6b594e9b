"""Catalog archives: crafted zips and tars (links, escapes, bombs, corrupt bytes) are refused with a
one-line ArchiveError, nothing is written outside the destination, and good archives unpack whole."""

from __future__ import annotations

import os
import random
import stat
import tarfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from moodboard.archives import MAX_DEPTH, ArchiveLimits, extract
from moodboard.errors import ArchiveError
from moodboard.settings import Settings

from tests.crafted_archives import add_tar, realpath_overflow_tar, tree

LIMITS = ArchiveLimits.from_settings(Settings())
CSV = b"id,title,category,image\na,A,hat,images/a.jpg\n"


def make_zip(path: Path, members: list[tuple[str, bytes]], *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def make_tar(path: Path, members: list[tuple[str, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members:
            add_tar(tf, name, tarfile.DIRTYPE if name.endswith("/") else tarfile.REGTYPE, data=data, mtime=1_600_000_000)
    return path


def test_realpath_overflow_tar_cve_2025_4517_is_refused_and_writes_nothing_outside(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    (tmp_path / "flag").write_text("original")
    archive = realpath_overflow_tar(tmp_path / "attack.tar", dest)
    before = tree(tmp_path, skip=dest)

    with pytest.raises(ArchiveError, match="links are not allowed") as caught:
        extract(archive, dest, limits=LIMITS)

    assert "\n" not in caught.value.message
    assert (tmp_path / "flag").read_text() == "original"
    assert not (tmp_path / "newfile").exists()
    assert tree(tmp_path, skip=dest) == before
    assert not dest.exists(), "a refused archive leaves no partial folder"


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_links_are_refused_even_when_they_point_inside(tmp_path: Path, kind: bytes) -> None:
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tf:
        add_tar(tf, "catalog.csv", data=CSV)
        add_tar(tf, "alias.csv", kind, linkname="catalog.csv")

    with pytest.raises(ArchiveError, match=r"holds a link \('alias.csv' -> 'catalog.csv'\); links are not allowed"):
        extract(archive, tmp_path / "dest", limits=LIMITS)


def test_tar_hard_link_to_a_missing_member_is_a_domain_error_not_keyerror(tmp_path: Path) -> None:
    archive = tmp_path / "dangling.tar"
    with tarfile.open(archive, "w") as tf:
        add_tar(tf, "a.csv", tarfile.LNKTYPE, linkname="not/in/archive.csv")

    with pytest.raises(ArchiveError, match="links are not allowed"):
        extract(archive, tmp_path / "dest", limits=LIMITS)


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_tar_device_and_fifo_members_are_refused(tmp_path: Path, kind: bytes) -> None:
    archive = tmp_path / "special.tar"
    with tarfile.open(archive, "w") as tf:
        add_tar(tf, "dev", kind)

    with pytest.raises(ArchiveError, match="device, fifo or other special member"):
        extract(archive, tmp_path / "dest", limits=LIMITS)
    assert not (tmp_path / "dest").exists()


def test_zip_symlink_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    info = zipfile.ZipInfo("passwd")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(info, "/etc/passwd")

    with pytest.raises(ArchiveError, match=r"holds a link \('passwd'\); links are not allowed"):
        extract(archive, tmp_path / "dest", limits=LIMITS)


def test_zip_fifo_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "fifo.zip"
    info = zipfile.ZipInfo("pipe")
    info.create_system = 3
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(info, "")

    with pytest.raises(ArchiveError, match="special file"):
        extract(archive, tmp_path / "dest", limits=LIMITS)


ESCAPES = ["../outside.csv", "shop/../../outside.csv", "/tmp/outside.csv", "C:/outside.csv", "\\outside.csv"]


@pytest.mark.parametrize("name", ESCAPES)
@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_members_that_would_leave_the_folder_are_refused(tmp_path: Path, name: str, fmt: str) -> None:
    dest = tmp_path / "deep" / "dest"
    build = make_zip if fmt == "zip" else make_tar
    archive = build(tmp_path / f"escape.{fmt}", [("ok.csv", CSV), (name, b"x")])

    with pytest.raises(ArchiveError, match="would be written outside its folder"):
        extract(archive, dest, limits=LIMITS)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", f"escape.{fmt}"]


def test_zip_bomb_is_refused_by_the_ratio_limit_before_writing(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bomb.zip", [("catalog.csv", CSV), ("zeros.bin", bytes(30 * 1024 * 1024))])
    assert archive.stat().st_size < 100_000

    with pytest.raises(ArchiveError, match=r"unpacks to more than 200 times its own size .*archive_max_ratio"):
        extract(archive, tmp_path / "dest", limits=LIMITS)
    assert not (tmp_path / "dest").exists()


def test_tar_gz_bomb_is_refused_by_the_ratio_limit(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "bomb.tar.gz", [("zeros.bin", bytes(30 * 1024 * 1024))])

    with pytest.raises(ArchiveError, match="archive_max_ratio"):
        extract(archive, tmp_path / "dest", limits=LIMITS)


def test_total_uncompressed_bytes_are_limited(tmp_path: Path) -> None:
    rng = random.Random(1)
    members = [(f"part{i}.bin", rng.randbytes(400)) for i in range(3)]
    limits = ArchiveLimits(max_bytes=1000, max_member_bytes=1000, max_members=10, max_ratio=10)

    for archive in (make_zip(tmp_path / "big.zip", members, compression=zipfile.ZIP_STORED),
                    make_tar(tmp_path / "big.tar", members, mode="w")):
        with pytest.raises(ArchiveError, match=r"unpacks to more than 1000 bytes \(limit archive_max_bytes\)"):
            extract(archive, tmp_path / "dest", limits=limits)


def test_member_size_is_limited(tmp_path: Path) -> None:
    limits = ArchiveLimits(max_bytes=10_000, max_member_bytes=100, max_members=10, max_ratio=1000)
    archive = make_zip(tmp_path / "member.zip", [("small.csv", b"x" * 50), ("large.csv", b"y" * 101)])

    with pytest.raises(ArchiveError, match=r"'large.csv' unpacks to more than 100 bytes .*archive_max_member_bytes"):
        extract(archive, tmp_path / "dest", limits=limits)


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_member_count_is_limited(tmp_path: Path, fmt: str) -> None:
    limits = ArchiveLimits(max_bytes=10_000, max_member_bytes=100, max_members=10, max_ratio=1000)
    build = make_zip if fmt == "zip" else make_tar
    archive = build(tmp_path / f"many.{fmt}", [(f"f{i}.txt", b"") for i in range(11)])

    with pytest.raises(ArchiveError, match=r"(holds 11 members|more than 10 members).*archive_max_members"):
        extract(archive, tmp_path / "dest", limits=limits)


def test_corrupt_zip_is_a_domain_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    with pytest.raises(ArchiveError, match=r"^garbage.zip is not a readable zip archive \(File is not a zip file\)$"):
        extract(garbage, tmp_path / "dest", limits=LIMITS)

    good = make_zip(tmp_path / "flipped.zip", [("catalog.csv", CSV * 50)])
    data = bytearray(good.read_bytes())
    data[60] ^= 0xFF  # inside the compressed data: a CRC or deflate error when read
    good.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="flipped.zip is corrupt or truncated at 'catalog.csv'"):
        extract(good, tmp_path / "dest", limits=LIMITS)


def test_zip_with_a_file_and_a_folder_of_one_name_is_a_domain_error(tmp_path: Path) -> None:
    for order, members in enumerate(([("shop", b"file"), ("shop/catalog.csv", CSV)],
                                     [("shop/catalog.csv", CSV), ("shop", b"file")],
                                     [("shop/", b""), ("shop", b"file")])):
        archive = make_zip(tmp_path / f"clash{order}.zip", members)
        with pytest.raises(ArchiveError, match=rf"clash{order}.zip holds a file and a folder both named 'shop'"):
            extract(archive, tmp_path / "dest", limits=LIMITS)


def test_two_members_of_one_name_are_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "twice.tar", [("catalog.csv", CSV), ("catalog.csv", b"id\n")], mode="w")
    with pytest.raises(ArchiveError, match="holds two members named 'catalog.csv'"):
        extract(archive, tmp_path / "dest", limits=LIMITS)


def test_encrypted_zip_member_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "secret.zip", [("catalog.csv", CSV)])
    data = bytearray(archive.read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local header, central directory
        data[data.index(signature) + flags_at] |= 0x1  # zipfile writes no encrypted members: set the flag
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="holds an encrypted member"):
        extract(archive, tmp_path / "dest", limits=LIMITS)


def test_too_deep_or_too_long_names_are_refused(tmp_path: Path) -> None:
    deep = make_tar(tmp_path / "deep.tar", [("/".join(["d"] * (MAX_DEPTH + 1)) + "/x.csv", CSV)], mode="w")
    with pytest.raises(ArchiveError, match=f"nested over {MAX_DEPTH} folders deep"):
        extract(deep, tmp_path / "dest", limits=LIMITS)
    long = make_tar(tmp_path / "long.tar", [("n" * 2000, CSV)], mode="w")
    with pytest.raises(ArchiveError, match="over 1024 characters"):
        extract(long, tmp_path / "dest", limits=LIMITS)


def test_good_archives_unpack_whole_with_their_times(tmp_path: Path) -> None:
    members = [("./", b""), ("./shop/", b""), ("./shop/catalog.csv", CSV), ("./shop/images/a.jpg", b"jpeg")]
    tgz = make_tar(tmp_path / "shop.tgz", members)
    unpacked = extract(tgz, tmp_path / "from-tar", limits=LIMITS)
    assert (unpacked.files, unpacked.bytes) == (2, len(CSV) + 4)
    assert (tmp_path / "from-tar" / "shop" / "catalog.csv").read_bytes() == CSV
    assert (tmp_path / "from-tar" / "shop" / "images" / "a.jpg").stat().st_mtime == 1_600_000_000

    archive = tmp_path / "shop.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(zipfile.ZipInfo("shop/catalog.csv", date_time=(2024, 5, 6, 7, 8, 10)), CSV)
    extract(archive, tmp_path / "from-zip", limits=LIMITS)
    written = tmp_path / "from-zip" / "shop" / "catalog.csv"
    assert written.read_bytes() == CSV
    assert written.stat().st_mtime == time.mktime((2024, 5, 6, 7, 8, 10, 0, 0, -1))


def test_extract_refuses_a_destination_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep.txt").write_text("mine")
    archive = make_zip(tmp_path / "a.zip", [("catalog.csv", CSV)])
    with pytest.raises(ValueError, match="not empty"):
        extract(archive, tmp_path / "dest", limits=LIMITS)
    assert (tmp_path / "dest" / "keep.txt").read_text() == "mine"


def _mutations(data: bytes, count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    variants = [data[:cut] for cut in range(0, len(data), max(1, len(data) // 40))]
    for _ in range(count):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        variants.append(bytes(mutated))
    return variants


@pytest.mark.parametrize("suffix, build", [
    (".zip", lambda p: make_zip(p, [("shop/catalog.csv", CSV * 20), ("shop/images/a.jpg", bytes(range(256)) * 8)])),
    (".tar.gz", lambda p: make_tar(p, [("shop/", b""), ("shop/catalog.csv", CSV * 20), ("shop/a.jpg", b"j" * 700)])),
    (".tar", lambda p: make_tar(p, [("shop/catalog.csv", CSV * 20), ("shop/a.jpg", b"j" * 700)], mode="w")),
])
def test_truncated_or_mangled_archives_raise_only_archive_errors(tmp_path: Path, suffix: str,
                                                                 build: Callable[[Path], Path]) -> None:
    original = build(tmp_path / f"good{suffix}").read_bytes()
    outcomes = {"unpacked": 0, "refused": 0}
    for number, variant in enumerate(_mutations(original, count=150, seed=7)):
        archive = tmp_path / f"variant{suffix}"
        archive.write_bytes(variant)
        dest = tmp_path / f"dest{number}"
        try:
            extract(archive, dest, limits=LIMITS)
        except ArchiveError as exc:
            assert "\n" not in exc.message
            assert not dest.exists()
            outcomes["refused"] += 1
        else:
            outcomes["unpacked"] += 1
    assert outcomes["refused"] > 0
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(("dest", "good", "variant"))) == []
