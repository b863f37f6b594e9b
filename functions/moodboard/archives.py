"""Catalog archives (.zip, .tar, .tar.gz, .tgz), unpacked member by member with every check done here.

tarfile's `data` filter is not relied on: unpatched Pythons let a realpath overflow through deep
folders and symlink chains past it (CVE-2025-4517). So nothing but regular files and folders is
ever written: links (symbolic and hard), devices and fifos are refused. Each member's name is
checked as text (no absolute path, drive or `..`), its folder is made one component at a time (a
file or a link on the way is refused), the folder's real path is re-checked against the destination
for every member (strict realpath, so an overflow fails instead of passing unresolved), and the file
is opened with O_EXCL and O_NOFOLLOW. Sizes are counted on the bytes actually written, so a member
whose header lies cannot pass the limits: total bytes, bytes per member, member count, and
uncompressed bytes per byte of archive. Every failure is an ArchiveError with a one-line message,
and the destination is removed.
"""

from __future__ import annotations

import logging
import lzma
import os
import re
import shutil
import stat
import struct
import tarfile
import time
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from moodboard.errors import ArchiveError
from moodboard.settings import Settings

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
MAX_NAME_CHARS = 1024
MAX_DEPTH = 32
SHOWN_NAME_CHARS = 60
CHUNK_BYTES = 1024 * 1024
ZIP_ENCRYPTED_FLAG = 0x1
# What reading a damaged archive raises, besides tarfile's and zipfile's own errors.
CORRUPT = (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError,
           NotImplementedError, struct.error, OverflowError)
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ArchiveLimits:
    """What one archive may unpack to (the archive_* settings)."""

    max_bytes: int
    max_member_bytes: int
    max_members: int
    max_ratio: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveLimits:
        return cls(max_bytes=settings.archive_max_bytes, max_member_bytes=settings.archive_max_member_bytes,
                   max_members=settings.archive_max_members, max_ratio=settings.archive_max_ratio)


@dataclass(frozen=True)
class Unpacked:
    """What an extraction wrote."""

    files: int
    bytes: int


def is_archive(name: str) -> bool:
    """True for the file names extract() unpacks."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def extract(archive: Path, dest: Path, *, limits: ArchiveLimits, label: str | None = None) -> Unpacked:
    """Unpack a zip or tar archive (gzip, bzip2 or xz compressed) into dest, which must be empty or
    absent. Raises ArchiveError, with dest removed, for a corrupt archive or a refused member; its
    message names the archive `label` (default: the file name)."""
    archive, dest = Path(archive), Path(dest)
    label = label or archive.name
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ValueError(f"{dest} is not empty")
    try:
        writer = _Writer(label, dest, limits, compressed=archive.stat().st_size)
        if archive.name.lower().endswith(".zip"):
            _unzip(archive, writer)
        else:
            _untar(archive, writer)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    logger.info("unpacked %s: %d files, %d bytes", label, writer.files, writer.written)
    return Unpacked(files=writer.files, bytes=writer.written)


def _unzip(archive: Path, writer: _Writer) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except CORRUPT as exc:
        raise ArchiveError(f"{writer.label} is not a readable zip archive ({_one_line(exc)})") from exc
    with zf:
        infos = zf.infolist()
        writer.check_declared(len(infos), ((info.filename, info.file_size) for info in infos))
        for info in infos:
            writer.count()
            mode = info.external_attr >> 16 if info.create_system == 3 else 0
            kind = stat.S_IFMT(mode)
            if info.is_dir() or kind == stat.S_IFDIR:
                writer.folder(info.filename)
                continue
            if kind == stat.S_IFLNK:
                raise ArchiveError(f"{writer.label} holds a link ({_show(info.filename)}); links are not allowed")
            if kind not in (0, stat.S_IFREG):
                raise ArchiveError(f"{writer.label} holds a special file ({_show(info.filename)}); "
                                   f"only files and folders are allowed")
            if info.flag_bits & ZIP_ENCRYPTED_FLAG:
                raise ArchiveError(f"{writer.label} holds an encrypted member ({_show(info.filename)})")
            try:
                source = zf.open(info)
            except NotImplementedError as exc:
                raise ArchiveError(f"{writer.label}: {_show(info.filename)} uses an unsupported compression "
                                   f"method") from exc
            except CORRUPT as exc:
                raise writer.corrupt(info.filename, exc) from exc
            with source:
                writer.file(info.filename, source, _zip_mtime(info.date_time))


def _untar(archive: Path, writer: _Writer) -> None:
    try:
        tf = tarfile.open(archive, mode="r:*")
    except CORRUPT as exc:
        raise ArchiveError(f"{writer.label} is not a readable tar archive ({_one_line(exc)})") from exc
    with tf:
        members = iter(tf)
        while True:
            try:
                member = next(members)
            except StopIteration:
                break
            except CORRUPT as exc:
                raise writer.corrupt("a member header", exc) from exc
            writer.count()
            if member.isdir():
                writer.folder(member.name)
            elif member.issym() or member.islnk():
                raise ArchiveError(f"{writer.label} holds a link ({_show(member.name)} -> {_show(member.linkname)}); "
                                   f"links are not allowed")
            elif member.isreg():
                writer.check_declared(writer.members, [(member.name, member.size)])
                try:
                    source = tf.extractfile(member)
                except CORRUPT as exc:
                    raise writer.corrupt(member.name, exc) from exc
                assert source is not None  # a regular member always has a file object
                with source:
                    writer.file(member.name, source, member.mtime)
            else:
                raise ArchiveError(f"{writer.label} holds a device, fifo or other special member "
                                   f"({_show(member.name)}); only files and folders are allowed")


class _Writer:
    """Writes members under one destination and keeps the counts the limits apply to."""

    def __init__(self, label: str, dest: Path, limits: ArchiveLimits, *, compressed: int) -> None:
        self.label = label
        self.root = os.path.realpath(dest, strict=True)
        self.limits = limits
        self.compressed = max(compressed, 1)
        self.members = 0
        self.files = 0
        self.written = 0

    def count(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise ArchiveError(f"{self.label} holds more than {self.limits.max_members} members "
                               f"(limit archive_max_members)")

    def check_declared(self, members: int, sizes: Iterable[tuple[str, int]]) -> None:
        """Refuse before writing when the headers already say a limit will be passed."""
        if members > self.limits.max_members:
            raise ArchiveError(f"{self.label} holds {members} members; the limit is {self.limits.max_members} "
                               f"(archive_max_members)")
        total = self.written
        for name, size in sizes:
            self._check_member(name, size)
            total += size
        self._check_total(total)

    def folder(self, name: str) -> None:
        self._folder(self._parts(name))

    def file(self, name: str, source: IO[bytes], mtime: float) -> None:
        parts = self._parts(name)
        if not parts:
            raise ArchiveError(f"{self.label} holds a file with an empty name")
        target = os.path.join(self._folder(parts[:-1]), parts[-1])
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(target, flags, 0o644)
        except (FileExistsError, IsADirectoryError) as exc:
            if os.path.isdir(target):
                raise self._file_and_folder(parts) from exc
            raise ArchiveError(f"{self.label} holds two members named {_show('/'.join(parts))}") from exc
        except OSError as exc:
            raise self._unwritable(name, exc) from exc
        size = 0
        with os.fdopen(fd, "wb") as out:
            while True:
                try:
                    chunk = source.read(CHUNK_BYTES)
                except CORRUPT as exc:
                    raise self.corrupt(name, exc) from exc
                if not chunk:
                    break
                size += len(chunk)
                self._check_member(name, size)
                self.written += len(chunk)
                self._check_total(self.written)
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise self._unwritable(name, exc) from exc
        self.files += 1
        try:
            os.utime(target, (mtime, mtime))
        except (OverflowError, ValueError, OSError):
            logger.debug("archive member %s keeps the extraction time (bad mtime %r)", name, mtime)

    def corrupt(self, name: str, exc: BaseException) -> ArchiveError:
        return ArchiveError(f"{self.label} is corrupt or truncated at {_show(name)} ({_one_line(exc)})")

    def _check_member(self, name: str, size: int) -> None:
        if size > self.limits.max_member_bytes:
            raise ArchiveError(f"{self.label}: {_show(name)} unpacks to more than {self.limits.max_member_bytes} "
                               f"bytes (limit archive_max_member_bytes)")

    def _check_total(self, total: int) -> None:
        if total > self.limits.max_bytes:
            raise ArchiveError(f"{self.label} unpacks to more than {self.limits.max_bytes} bytes "
                               f"(limit archive_max_bytes)")
        if total > self.limits.max_ratio * self.compressed:
            raise ArchiveError(f"{self.label} unpacks to more than {self.limits.max_ratio:g} times its own size "
                               f"of {self.compressed} bytes (limit archive_max_ratio)")

    def _parts(self, name: str) -> list[str]:
        """The member's path components, refusing any name that could leave the destination."""
        if "\x00" in name or len(name) > MAX_NAME_CHARS:
            raise ArchiveError(f"{self.label} holds a member whose name is over {MAX_NAME_CHARS} characters "
                               f"or holds a NUL ({_show(name)})")
        if name.startswith(("/", "\\")) or _DRIVE.match(name):
            raise ArchiveError(f"the archive member {_show(name)} has an absolute path; it would be written "
                               f"outside its folder")
        parts = [part for part in PurePosixPath(name).parts if part not in ("", ".")]
        if ".." in parts:
            raise ArchiveError(f"the archive member {_show(name)} would be written outside its folder")
        if len(parts) > MAX_DEPTH:
            raise ArchiveError(f"{self.label} holds a member nested over {MAX_DEPTH} folders deep ({_show(name)})")
        return parts

    def _folder(self, parts: list[str]) -> str:
        """Make the folders of `parts` under the destination and return the last one, refusing a
        file or a link on the way and re-checking that its real path is inside the destination."""
        current = self.root
        for index, part in enumerate(parts):
            current = os.path.join(current, part)
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                try:
                    os.mkdir(current, 0o755)
                except OSError as exc:
                    raise self._unwritable("/".join(parts[: index + 1]), exc) from exc
                continue
            except OSError as exc:
                raise self._unwritable("/".join(parts[: index + 1]), exc) from exc
            if stat.S_ISLNK(mode):
                raise ArchiveError(f"{self.label}: {_show('/'.join(parts[: index + 1]))} is a link; "
                                   f"links are not allowed")
            if not stat.S_ISDIR(mode):
                raise self._file_and_folder(parts[: index + 1])
        try:
            real = os.path.realpath(current, strict=True)
        except OSError as exc:
            raise self._unwritable("/".join(parts), exc) from exc
        if real != self.root and not real.startswith(self.root + os.sep):
            raise ArchiveError(f"the archive member {_show('/'.join(parts))} would be written outside its folder")
        return current

    def _file_and_folder(self, parts: list[str]) -> ArchiveError:
        return ArchiveError(f"{self.label} holds a file and a folder both named {_show('/'.join(parts))}")

    def _unwritable(self, name: str, exc: OSError) -> ArchiveError:
        return ArchiveError(f"cannot unpack {_show(name)} from {self.label}: {exc.strerror or _one_line(exc)}")


def _zip_mtime(date_time: tuple[int, int, int, int, int, int]) -> float:
    try:
        return time.mktime((*date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        return time.time()


def _show(name: str) -> str:
    """A member name for a one-line message: repr'd (no control characters) and shortened."""
    shown = repr(name)
    return shown if len(shown) <= SHOWN_NAME_CHARS else shown[: SHOWN_NAME_CHARS - 4] + "...'"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
