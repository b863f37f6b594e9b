"""The SSRF guard without a network: stubbed resolvers, and a socket layer that records and refuses.

No test here ever reaches another machine: socket.socket.connect is replaced by a recorder that
refuses every connection, so even a broken guard could not send traffic.
"""

from __future__ import annotations

import socket

import pytest

from moodboard.errors import BlockedURL, FetchError, UnsupportedImage
from moodboard.fetch import (
    Fetched,
    FetchLimits,
    fetch,
    fetch_image,
    find_page_image,
    is_public_address,
    looks_like_image,
)
from moodboard.settings import Settings

LIMITS = FetchLimits(timeout=1.0, max_bytes=1024, max_redirects=2, max_html_bytes=1024)
PUBLIC_V4 = "93.184.216.34"

BLOCKED_ADDRESSES = [
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",
    "127.0.0.1",
    "0.0.0.0",
    "::",
    "::1",
    "fe80::1",
    "fe80::1%1",
    "fd00::1",
    "::ffff:10.0.0.1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "100.64.0.1",
    "224.0.0.1",
    "ff02::1",
    "240.0.0.1",
    "255.255.255.255",
    "198.18.0.1",
    "2002:a00:1::1",
]


class RecordingResolver:
    """Answers from a script, one answer per call (the last repeats), and counts the calls."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Every address a socket tried to connect to; each attempt is refused, none leaves the process."""
    attempts: list[tuple] = []

    def refuse(self: socket.socket, address: tuple) -> None:
        attempts.append(tuple(address))
        raise ConnectionRefusedError("connections are disabled in unit tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.mark.parametrize("address", BLOCKED_ADDRESSES)
def test_fetch_host_resolving_to_non_public_address_is_blocked_before_connecting(
    address: str, connections: list[tuple]
) -> None:
    resolver = RecordingResolver([address])
    with pytest.raises(BlockedURL) as caught:
        fetch("http://shop.test/image.jpg", limits=LIMITS, resolver=resolver)
    assert caught.value.status_code == 400
    assert "non-public address" in caught.value.message
    assert resolver.calls == [("shop.test", 80)]
    assert connections == []


@pytest.mark.parametrize("address", ["10.0.0.1", "169.254.169.254", "fd00::1", "::ffff:127.0.0.1", "0.0.0.0"])
def test_fetch_allow_loopback_still_blocks_everything_but_loopback(address: str, connections: list[tuple]) -> None:
    with pytest.raises(BlockedURL):
        fetch("http://shop.test/", limits=LIMITS, resolver=RecordingResolver([address]), allow_loopback=True)
    assert connections == []


def test_fetch_blocks_when_any_resolved_address_is_private(connections: list[tuple]) -> None:
    resolver = RecordingResolver([PUBLIC_V4, "10.0.0.1"])
    with pytest.raises(BlockedURL, match=r"\(10\.0\.0\.1\)"):
        fetch("https://shop.test/a.png", limits=LIMITS, resolver=resolver)
    assert connections == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1:8080/",
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://[fd00::1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://0.0.0.0/",
    ],
)
def test_fetch_ip_literal_url_is_checked_without_the_resolver(url: str, connections: list[tuple]) -> None:
    resolver = RecordingResolver([PUBLIC_V4])
    with pytest.raises(BlockedURL):
        fetch(url, limits=LIMITS, resolver=resolver)
    assert resolver.calls == []
    assert connections == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://shop.test/image.jpg",
        "gopher://shop.test:70/_GET",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "//shop.test/image.jpg",
        "http:///image.jpg",
        "http://user:secret@shop.test/image.jpg",
        "http://exa mple.com/",
        "http://[::1%25lo]/",
    ],
)
def test_fetch_bad_url_is_blocked_without_resolving(url: str, connections: list[tuple]) -> None:
    resolver = RecordingResolver([PUBLIC_V4])
    with pytest.raises(BlockedURL) as caught:
        fetch(url, limits=LIMITS, resolver=resolver)
    assert caught.value.status_code == 400
    assert resolver.calls == []
    assert connections == []


def test_fetch_image_blocks_data_url_with_scheme_message(connections: list[tuple]) -> None:
    with pytest.raises(BlockedURL, match="only http and https URLs can be fetched, not 'data'"):
        fetch_image("data:image/png;base64,iVBORw0KGgo=", limits=LIMITS, resolver=RecordingResolver([PUBLIC_V4]))


def test_fetch_connects_to_the_checked_address_when_dns_answer_changes(connections: list[tuple]) -> None:
    # A rebinding resolver: a public answer for the check, loopback/private for any later lookup.
    resolver = RecordingResolver([PUBLIC_V4], ["127.0.0.1"], ["10.0.0.1"])
    with pytest.raises(FetchError) as caught:
        fetch("http://rebind.test:8080/image.jpg", limits=LIMITS, resolver=resolver)
    assert not isinstance(caught.value, BlockedURL)
    assert resolver.calls == [("rebind.test", 8080)]
    assert connections == [(PUBLIC_V4, 8080)]


def test_fetch_tries_each_checked_address_and_no_other(connections: list[tuple]) -> None:
    resolver = RecordingResolver([PUBLIC_V4, "2606:4700::1111"], ["127.0.0.1"])
    with pytest.raises(FetchError, match="ConnectError"):
        fetch("https://shop.test/image.jpg", limits=LIMITS, resolver=resolver)
    assert [attempt[:2] for attempt in connections] == [(PUBLIC_V4, 443), ("2606:4700::1111", 443)]
    assert len(resolver.calls) == 1


@pytest.mark.parametrize(
    ("address", "public"),
    [
        (PUBLIC_V4, True),
        ("2606:4700::1111", True),
        ("::ffff:93.184.216.34", True),
        ("2002:5db8:d822::1", True),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("2002:a00:1::1", False),
        ("100.64.0.1", False),
        ("fc00::1", False),
        ("not-an-ip", False),
    ],
)
def test_is_public_address_classifies_address(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_fetch_limits_from_settings_uses_fetch_settings() -> None:
    settings = Settings(fetch_timeout_seconds=2.5, max_image_bytes=1234, fetch_max_redirects=5, max_html_bytes=99)
    assert FetchLimits.from_settings(settings) == FetchLimits(
        timeout=2.5, max_bytes=1234, max_redirects=5, max_html_bytes=99
    )


def test_find_page_image_prefers_og_image_and_resolves_relative_url() -> None:
    html = b"""<html><head>
      <meta name="twitter:image" content="https://cdn.test/twitter.jpg">
      <meta property="og:image" content="../img/pin.jpg?w=736&amp;h=1104">
    </head><body></body></html>"""
    assert find_page_image(html, "https://pins.test/pin/123/") == "https://pins.test/pin/img/pin.jpg?w=736&h=1104"


def test_find_page_image_prefers_secure_url_then_falls_back_to_twitter_then_link() -> None:
    page = "https://shop.test/p/1"
    secure = b'<meta property="og:image" content="/a.jpg"><meta property="og:image:secure_url" content="/s.jpg">'
    twitter = b'<link rel="image_src" href="/l.jpg"><meta name="twitter:image:src" content="//cdn.test/t.jpg">'
    link = b'<link rel="preload image_src" href="l.jpg">'
    assert find_page_image(secure, page) == "https://shop.test/s.jpg"
    assert find_page_image(twitter, page) == "https://cdn.test/t.jpg"
    assert find_page_image(link, page) == "https://shop.test/p/l.jpg"
    assert find_page_image(b"<html><head><title>x</title></head></html>", page) is None


def test_find_page_image_decodes_declared_charset() -> None:
    html = '<meta property="og:image" content="/bilder/kleid-grün.jpg">'.encode("latin-1")
    url = find_page_image(html, "https://shop.test/", "text/html; charset=ISO-8859-1")
    assert url == "https://shop.test/bilder/kleid-gr%C3%BCn.jpg"


@pytest.mark.parametrize(
    ("content", "content_type", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "application/octet-stream", True),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", None, True),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "binary/octet-stream", True),
        (b"anything", "image/avif", True),
        (b"<!doctype html><html>", "application/octet-stream", False),
        (b"%PDF-1.7", "application/pdf", False),
    ],
)
def test_looks_like_image_uses_type_then_magic_bytes(content: bytes, content_type: str | None, expected: bool) -> None:
    assert looks_like_image(Fetched(content=content, content_type=content_type, final_url="http://x.test/")) is expected


def test_unsupported_image_is_415() -> None:
    assert UnsupportedImage("the page has no og:image").status_code == 415
