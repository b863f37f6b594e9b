"""SSRF-guarded HTTP fetch: product images for the loader, a shopper's image URL or page for search.

Every hop is checked before a byte leaves the machine: scheme http(s) only, no userinfo, and the host
resolved ONCE with every address required to be public. The connection then goes to the checked
address (never a fresh DNS lookup), so a DNS answer that changes between check and connect cannot
steer us to loopback, a private network or the cloud metadata endpoint. The original host still goes
out as the Host header and as the TLS server name, so certificates are verified against it.

"Public" is decided by moodboard.addresses: global unicast and outside every block of IANA's
special-purpose address registries, not only what this Python's `ipaddress` calls private.

This is built on httpcore (the engine under httpx) with a network backend that only dials pinned
addresses and clamps every socket operation to one total deadline, which also cuts an upstream that
drips a byte at a time. Redirects are followed here, hop by hop, through the same checks. Proxies
from the environment are never used: a proxy would do its own DNS lookup.

A page's og:image is read by a WHATWG tokenizer in C (turbohtml) that runs in linear time on any
input: no tree is built, so no stack of open elements to walk (tree builders, libxml2's and Lexbor's
included, go quadratic on deep or misnested markup). Only the first HTML_PARSE_BYTES are read, in
chunks, and the fetch's deadline is checked between chunks.
"""

from __future__ import annotations

import codecs
import ipaddress
import logging
import re
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

import httpcore
import httpx
import turbohtml

from moodboard.addresses import is_public_address
from moodboard.errors import (
    BadContentEncoding,
    BlockedURL,
    FetchError,
    FetchTimeout,
    FetchTooLarge,
    UnsupportedImage,
)
from moodboard.settings import Settings

logger = logging.getLogger(__name__)

Resolver = Callable[[str, int], list[str]]

ALLOWED_SCHEMES = frozenset({"http", "https"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
HOSTNAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$", re.IGNORECASE)
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# og:image sits in <head>: the first 512 KiB of a page is read for it, whatever the page's size.
HTML_PARSE_BYTES = 512 * 1024
_HTML_PARSE_CHUNK = 64 * 1024
# Charsets a page may declare (Python codec names of the WHATWG Encoding Standard's encodings); any
# other label (idna, punycode, unicode_escape ...) is read as UTF-8 instead of running its codec.
WEB_CHARSETS = frozenset({
    "utf-8", "utf-16-le", "utf-16-be", "utf-16", "ascii", "iso8859-1", "iso8859-2", "iso8859-3", "iso8859-4",
    "iso8859-5", "iso8859-6", "iso8859-7", "iso8859-8", "iso8859-10", "iso8859-13", "iso8859-14",
    "iso8859-15", "iso8859-16", "cp866", "koi8-r", "koi8-u", "mac-roman", "mac-cyrillic", "cp874", "cp1250",
    "cp1251", "cp1252", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258", "gbk", "gb2312",
    "gb18030", "big5", "big5hkscs", "euc_jp", "iso2022_jp", "shift_jis", "cp932", "euc_kr", "cp949", "tis-620",
})
# Content-Encodings undone although we ask for identity (servers send them anyway); others pass as is.
COMPRESSED_CODINGS = frozenset({"gzip", "x-gzip", "deflate"})
_ZLIB_HEADER_BYTES = 2
USER_AGENT = "moodboard/0.1 (+image fetch)"
# Page metadata that names a preview image, in order of preference (Pinterest pins carry og:image).
IMAGE_META_KEYS = ("og:image:secure_url", "og:image", "og:image:url", "twitter:image", "twitter:image:src")
IMAGE_MAGIC: tuple[tuple[int, bytes], ...] = (
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"\x89PNG\r\n\x1a\n"),
    (0, b"GIF87a"),
    (0, b"GIF89a"),
    (8, b"WEBP"),
    (0, b"BM"),
    (0, b"II*\x00"),  # TIFF
    (0, b"MM\x00*"),
    (4, b"ftypavif"),
    (4, b"ftypheic"),
)


@dataclass(frozen=True)
class FetchLimits:
    """How long and how much one fetch may take; HTML pages get their own (smaller) byte cap."""

    timeout: float = 8.0
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 3
    max_html_bytes: int = 2 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchLimits:
        """The limits configured for this process."""
        return cls(
            timeout=settings.fetch_timeout_seconds,
            max_bytes=settings.max_image_bytes,
            max_redirects=settings.fetch_max_redirects,
            max_html_bytes=settings.max_html_bytes,
        )


@dataclass(frozen=True)
class Fetched:
    """A fetched body, its Content-Type header as sent, and the URL it finally came from."""

    content: bytes
    content_type: str | None
    final_url: str

    @property
    def media_type(self) -> str | None:
        """The Content-Type without parameters, lower-cased ("image/jpeg")."""
        if not self.content_type:
            return None
        return self.content_type.split(";", 1)[0].strip().lower() or None


def default_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (IPv4 and IPv6), in its order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"cannot resolve host {host!r}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_loopback_literal(address: str) -> bool:
    """127.0.0.0/8 or ::1, written as such (not an IPv4-mapped or other disguised form)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _checked_addresses(host: str, port: int, resolver: Resolver, allow_loopback: bool) -> list[str]:
    """Resolve host once and return its addresses if every one of them may be dialled."""
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = list(resolver(host, port))
    if not addresses:
        raise FetchError(f"host {host!r} has no address")
    for address in addresses:
        if not (is_public_address(address) or (allow_loopback and _is_loopback_literal(address))):
            logger.warning("blocked fetch: %s resolves to non-public address %s", host, address)
            raise BlockedURL(
                f"the URL's host resolves to a non-public address ({address})",
                details={"host": host, "address": address},
            )
    return addresses


def _parse_url(url: str | httpx.URL) -> httpx.URL:
    """Parse and vet a URL's shape: http(s), a host, no credentials."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise BlockedURL("the URL is not valid") from exc
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise BlockedURL(f"only http and https URLs can be fetched, not {parsed.scheme or 'a relative URL'!r}")
    if parsed.userinfo:
        raise BlockedURL("URLs with credentials (user:password@) are not fetched")
    if not parsed.raw_host:
        raise BlockedURL("the URL has no host")
    host = parsed.raw_host.decode("ascii")
    if not (HOSTNAME.match(host) or (":" in host and "%" not in host)):
        raise BlockedURL(f"the URL's host {host!r} is not a valid host name")
    return parsed


class _Deadline:
    """One total time budget; every socket operation gets at most what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds

    def check(self) -> None:
        """Raise FetchTimeout once the time is up."""
        self.budget(None)

    def budget(self, timeout: float | None) -> float:
        left = self.ends - time.monotonic()
        if left <= 0:
            raise FetchTimeout(f"the upstream took longer than {self.seconds:g} s")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose reads, writes and TLS handshake share the fetch's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.budget(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.budget(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, self._deadline.budget(timeout))
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> object:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Dials only addresses that passed the check for that (host, port); never resolves names."""

    def __init__(self, deadline: _Deadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline
        self.pins: dict[tuple[str, int], list[str]] = {}

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self.pins.get((host, port))
        if not addresses:
            raise BlockedURL(f"refusing to connect to unchecked host {host!r}")
        error: Exception | None = None
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(
                    address, port, self._deadline.budget(timeout), local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        assert error is not None
        raise error

    def connect_unix_socket(self, *args: object, **kwargs: object) -> httpcore.NetworkStream:
        raise BlockedURL("unix sockets are not fetched")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@lru_cache(maxsize=1)
def _default_ssl_context() -> ssl.SSLContext:
    """httpx's verifying context (certifi CAs), built once: loading the CA bundle costs milliseconds."""
    return httpx.create_ssl_context()


class _Decompressor:
    """Undoes gzip or deflate, within an output cap; broken or cut-off data is BadContentEncoding.

    "deflate" is accepted zlib-wrapped (as the RFC says) or raw (as some servers send it, and as
    browsers and httpx accept it): raw is tried when the first bytes are not a zlib header.
    """

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._zlib = zlib.decompressobj(32 + zlib.MAX_WBITS)  # a gzip or zlib header, detected
        # The first bytes, kept for the raw-deflate retry until zlib has checked its 2-byte header.
        self._head: bytes | None = b""

    def decompress(self, chunk: bytes, max_length: int) -> bytes:
        try:
            out = self._zlib.decompress(chunk, max_length)
        except zlib.error as exc:
            if self.coding != "deflate" or self._head is None:
                raise self._invalid() from exc
            data, self._head = self._head + chunk, None
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                return self._zlib.decompress(data, max_length)
            except zlib.error as raw_exc:
                raise self._invalid() from raw_exc
        if self._head is not None:
            self._head = self._head + chunk if len(self._head) + len(chunk) < _ZLIB_HEADER_BYTES else None
        return out

    def finish(self) -> None:
        """Raise BadContentEncoding if the compressed stream stopped before its end."""
        if not self._zlib.eof:
            raise BadContentEncoding(
                f"the upstream's {self.coding}-compressed body ends before the compressed data does",
                details={"content_encoding": self.coding},
            )

    def _invalid(self) -> BadContentEncoding:
        return BadContentEncoding(
            f"the upstream sent Content-Encoding {self.coding} but the body is not valid {self.coding} data",
            details={"content_encoding": self.coding},
        )


def _read_body(response: httpcore.Response, cap: int, url: str) -> bytes:
    """The response body, decompressed if the upstream insisted, refused once it passes cap."""
    declared = _header(response, b"content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise FetchTooLarge(f"the upstream body is {int(declared)} bytes, over the {cap} byte limit",
                            details={"bytes": int(declared), "max_bytes": cap})
    encoding = (_header(response, b"content-encoding") or "identity").lower()
    decoder = _Decompressor(encoding) if encoding in COMPRESSED_CODINGS else None
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_stream():
        if decoder is not None:
            chunk = decoder.decompress(chunk, cap + 1 - size)
        size += len(chunk)
        if size > cap:
            # the size is unknown (cut at the limit): only the limit is given
            raise FetchTooLarge(f"the upstream sent more than the {cap} byte limit", details={"max_bytes": cap})
        chunks.append(chunk)
    if decoder is not None:
        decoder.finish()
    logger.debug("fetched %d bytes from %s", size, url)
    return b"".join(chunks)


def _header(response: httpcore.Response, name: bytes) -> str | None:
    for key, value in response.headers:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def _is_html_type(content_type: str | None) -> bool:
    return bool(content_type) and content_type.split(";", 1)[0].strip().lower() in HTML_TYPES


def _fetch(
    url: str | httpx.URL,
    limits: FetchLimits,
    resolver: Resolver,
    allow_loopback: bool,
    deadline: _Deadline,
    ssl_context: ssl.SSLContext | None,
) -> Fetched:
    backend = _PinnedBackend(deadline)
    context = ssl_context or _default_ssl_context()
    current = _parse_url(url)
    with httpcore.ConnectionPool(ssl_context=context, network_backend=backend, retries=0) as pool:
        for hop in range(limits.max_redirects + 1):
            port = current.port or (443 if current.scheme == "https" else 80)
            host = current.raw_host.decode("ascii")
            key = (host, port)
            if key not in backend.pins:
                backend.pins[key] = _checked_addresses(host, port, resolver, allow_loopback)
            request_url = httpcore.URL(
                scheme=current.raw_scheme, host=current.raw_host, port=port, target=current.raw_path
            )
            headers = [
                (b"Host", current.netloc),
                (b"User-Agent", USER_AGENT.encode()),
                (b"Accept", b"image/*, text/html;q=0.8, */*;q=0.5"),
                (b"Accept-Encoding", b"identity"),
            ]
            timeouts = {name: deadline.budget(None) for name in ("connect", "read", "write", "pool")}
            extensions = {"timeout": timeouts, "sni_hostname": host}
            try:
                with pool.stream("GET", request_url, headers=headers, extensions=extensions) as response:
                    status = response.status
                    if status in REDIRECT_STATUSES:
                        location = _header(response, b"location")
                        if not location:
                            raise FetchError(f"the upstream redirected (HTTP {status}) without a Location")
                        current = _parse_url(current.join(location))
                        logger.debug("redirect %d to %s", hop + 1, current)
                        continue
                    if status >= 400:
                        raise FetchError(f"the upstream returned HTTP {status}", details={"status": status})
                    if not 200 <= status < 300:
                        raise FetchError(f"the upstream returned unexpected HTTP {status}", details={"status": status})
                    content_type = _header(response, b"content-type")
                    cap = limits.max_html_bytes if _is_html_type(content_type) else limits.max_bytes
                    content = _read_body(response, cap, str(current))
                    return Fetched(content=content, content_type=content_type, final_url=str(current))
            except httpcore.TimeoutException as exc:
                raise FetchTimeout(f"the upstream took longer than {limits.timeout:g} s") from exc
            except (httpcore.NetworkError, httpcore.ProtocolError, ssl.SSLError) as exc:
                raise FetchError(f"cannot fetch the URL: {exc.__class__.__name__}") from exc
    raise FetchError(f"the URL redirected more than {limits.max_redirects} times")


def fetch(
    url: str,
    *,
    limits: FetchLimits,
    resolver: Resolver = default_resolver,
    allow_loopback: bool = False,
    ssl_context: ssl.SSLContext | None = None,
) -> Fetched:
    """GET url through the SSRF guard within limits (one total deadline, byte caps, redirect count).

    Raises BlockedURL (bad scheme, credentials, or any non-public address on any hop), FetchTimeout,
    FetchTooLarge, or FetchError (upstream 4xx/5xx, network failure, too many redirects).
    allow_loopback admits 127.0.0.0/8 and ::1 only, for tests and the local demo's fixtures.
    """
    return _fetch(url, limits, resolver, allow_loopback, _Deadline(limits.timeout), ssl_context)


def _page_text(html: bytes, content_type: str | None) -> str:
    """The page decoded with its declared charset when that is a web encoding, else UTF-8."""
    charset = "utf-8"
    if content_type and "charset=" in content_type.lower():
        label = content_type.lower().split("charset=", 1)[1].split(";", 1)[0].strip(" \"'")
        try:
            name = codecs.lookup(label).name
        except LookupError:
            name = "utf-8"
        charset = name if name in WEB_CHARSETS else "utf-8"
    return html.decode(charset, errors="replace")


def _collect_image_meta(tokens: Iterable[turbohtml.Token], found: dict[str, str]) -> None:
    """Note og:/twitter: image metadata and <link rel="image_src"> among tokens (first one wins)."""
    start = turbohtml.TokenType.START_TAG
    for token in tokens:
        if token.type is not start or token.tag not in ("meta", "link"):
            continue
        values = {name: (value or "").strip() for name, value in token.attrs}
        if token.tag == "meta":
            key = (values.get("property") or values.get("name") or "").lower()
            if key in IMAGE_META_KEYS and values.get("content"):
                found.setdefault(key, values["content"])
        elif "image_src" in values.get("rel", "").lower().split() and values.get("href"):
            found.setdefault("image_src", values["href"])


def find_page_image(
    html: bytes,
    page_url: str,
    content_type: str | None = None,
    *,
    parse_bytes: int = HTML_PARSE_BYTES,
    check_time: Callable[[], None] | None = None,
) -> str | None:
    """The page's preview image URL (og:image, twitter:image, image_src), absolute, or None.

    Reads at most the first `parse_bytes` of the page with a linear-time tokenizer, in chunks;
    `check_time` (which raises to stop, e.g. FetchTimeout at the fetch's deadline) runs between them.
    """
    text = _page_text(html[:parse_bytes], content_type)
    found: dict[str, str] = {}
    tokenizer = turbohtml.Tokenizer()
    for offset in range(0, len(text), _HTML_PARSE_CHUNK):
        if check_time is not None:
            check_time()
        _collect_image_meta(tokenizer.feed(text[offset : offset + _HTML_PARSE_CHUNK]), found)
    tokenizer.close()
    _collect_image_meta(tokenizer, found)
    for key in (*IMAGE_META_KEYS, "image_src"):
        if key in found:
            try:
                return str(httpx.URL(page_url).join(found[key]))
            except httpx.InvalidURL as exc:
                raise UnsupportedImage(f"the page's {key} is not a valid URL") from exc
    return None


def looks_like_image(fetched: Fetched) -> bool:
    """An image by Content-Type, or by its first bytes when the type is missing or generic."""
    if fetched.media_type and fetched.media_type.startswith("image/"):
        return True
    head = fetched.content[:16]
    return any(head[offset : offset + len(magic)] == magic for offset, magic in IMAGE_MAGIC)


def _looks_like_html(fetched: Fetched) -> bool:
    if _is_html_type(fetched.content_type):
        return True
    head = fetched.content[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<meta"))


def fetch_image(
    url: str,
    *,
    limits: FetchLimits,
    resolver: Resolver = default_resolver,
    allow_loopback: bool = False,
    ssl_context: ssl.SSLContext | None = None,
) -> Fetched:
    """Fetch an image URL, or a page (a Pinterest pin, a shop page) and then the image it names.

    One hop of HTML only: the page's og:image (or twitter:image, image_src) goes through the same
    guard, within the same total deadline. Raises UnsupportedImage (415) when neither works.
    """
    deadline = _Deadline(limits.timeout)
    first = _fetch(url, limits, resolver, allow_loopback, deadline, ssl_context)
    if looks_like_image(first):
        return first
    if not _looks_like_html(first):
        raise UnsupportedImage(f"the URL is not an image or a web page (content type {first.media_type})")
    image_url = find_page_image(first.content, first.final_url, first.content_type, check_time=deadline.check)
    if image_url is None:
        raise UnsupportedImage("the page has no og:image")
    second = _fetch(image_url, limits, resolver, allow_loopback, deadline, ssl_context)
    if not looks_like_image(second):
        raise UnsupportedImage(f"the page's og:image is not an image (content type {second.media_type})")
    return second
