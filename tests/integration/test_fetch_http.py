"""The fetcher over real HTTP(S) on 127.0.0.1: images, og:image pages, redirects, limits, deadlines.

Host names are stubbed (fixtures.test -> 127.0.0.1) so Host headers and TLS names are exercised.
The socket layer only lets loopback connections through and records every attempt, so a redirect
to a blocked address could never send traffic even if the guard were broken.
"""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

import moodboard
from moodboard import http_errors
from moodboard.errors import BlockedURL, FetchError, FetchTimeout, FetchTooLarge, UnsupportedImage
from moodboard.fetch import FetchLimits, fetch, fetch_image

from tests.loopback import QuietHandler, loopback_server

HOST = "fixtures.test"
LIMITS = FetchLimits(timeout=1.0, max_bytes=64 * 1024, max_redirects=3, max_html_bytes=16 * 1024)
NAMES = {HOST: ["127.0.0.1"], "internal.test": ["10.0.0.1"], "metadata.test": ["169.254.169.254"]}


def resolver(host: str, port: int) -> list[str]:
    """The only DNS these tests have."""
    return NAMES[host]


def png_bytes(color: tuple[int, int, int] = (200, 40, 90)) -> bytes:
    buffer = BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = png_bytes()

Route = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Upstream:
    """A threaded HTTP server on 127.0.0.1 whose routes the test fills in."""

    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    scheme: str = "http"

    def url(self, path: str, host: str = HOST) -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", **headers: str) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    if "Content_Length" not in headers:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def serve(tls: ssl.SSLContext | None = None) -> Iterator[Upstream]:
    upstream = Upstream(port=0, scheme="https" if tls else "http")

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            upstream.hosts.append(self.headers.get("Host", ""))
            route = upstream.routes.get(self.path)
            if route is None:
                send(self, 404, b"not found", Content_Type="text/plain")
            else:
                route(self)

    with loopback_server(Handler, tls=tls, poll_interval=0.05) as server:
        upstream.port = server.server_address[1]
        yield upstream


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    yield from serve()


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Every connect attempt; only loopback ones go through, anything else is refused and recorded."""
    attempts: list[tuple] = []
    real_connect = socket.socket.connect

    def loopback_only(self: socket.socket, address: tuple) -> None:
        attempts.append(tuple(address))
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise ConnectionRefusedError("only loopback connections are allowed in tests")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    return attempts


def test_fetch_image_served_over_http(upstream: Upstream, connections: list[tuple]) -> None:
    upstream.routes["/img.png"] = lambda h: send(h, 200, PNG, Content_Type="image/png")
    got = fetch_image(upstream.url("/img.png"), limits=LIMITS, resolver=resolver, allow_loopback=True)
    assert got.content == PNG
    assert got.media_type == "image/png"
    assert got.final_url == upstream.url("/img.png")
    assert upstream.hosts == [f"{HOST}:{upstream.port}"]
    assert connections == [("127.0.0.1", upstream.port)]


def test_fetch_loopback_refused_without_allow_loopback(upstream: Upstream, connections: list[tuple]) -> None:
    upstream.routes["/img.png"] = lambda h: send(h, 200, PNG, Content_Type="image/png")
    with pytest.raises(BlockedURL):
        fetch(upstream.url("/img.png"), limits=LIMITS, resolver=resolver)
    assert connections == []
    assert upstream.hosts == []


def test_fetch_image_follows_og_image_of_pin_page_with_relative_url(upstream: Upstream) -> None:
    page = b'<!DOCTYPE html><html><head><meta property="og:image" content="../media/pin.png"></head></html>'
    upstream.routes["/pin/12345/"] = lambda h: send(h, 200, page, Content_Type="text/html; charset=utf-8")
    upstream.routes["/pin/media/pin.png"] = lambda h: send(h, 200, PNG, Content_Type="image/png")
    got = fetch_image(upstream.url("/pin/12345/"), limits=LIMITS, resolver=resolver, allow_loopback=True)
    assert got.content == PNG
    assert got.final_url == upstream.url("/pin/media/pin.png")


def test_fetch_image_falls_back_to_twitter_image(upstream: Upstream) -> None:
    other = png_bytes((10, 200, 30))
    page = b'<html><head><meta name="twitter:image" content="/t.png"><title>t</title></head></html>'
    upstream.routes["/page"] = lambda h: send(h, 200, page, Content_Type="text/html")
    upstream.routes["/t.png"] = lambda h: send(h, 200, other, Content_Type="application/octet-stream")
    got = fetch_image(upstream.url("/page"), limits=LIMITS, resolver=resolver, allow_loopback=True)
    assert got.content == other


def test_fetch_image_gzip_page_is_decoded(upstream: Upstream) -> None:
    page = gzip.compress(b'<html><head><meta property="og:image" content="/g.png"></head></html>')
    upstream.routes["/gz"] = lambda h: send(h, 200, page, Content_Type="text/html", Content_Encoding="gzip")
    upstream.routes["/g.png"] = lambda h: send(h, 200, PNG, Content_Type="image/png")
    assert fetch_image(upstream.url("/gz"), limits=LIMITS, resolver=resolver, allow_loopback=True).content == PNG


def test_fetch_image_page_without_og_image_is_415(upstream: Upstream) -> None:
    page = b"<html><head></head><body>hi</body></html>"
    upstream.routes["/plain"] = lambda h: send(h, 200, page, Content_Type="text/html")
    with pytest.raises(UnsupportedImage, match="the page has no og:image") as caught:
        fetch_image(upstream.url("/plain"), limits=LIMITS, resolver=resolver, allow_loopback=True)
    assert caught.value.status_code == 415


def test_fetch_image_non_image_non_html_is_415(upstream: Upstream) -> None:
    upstream.routes["/doc.pdf"] = lambda h: send(h, 200, b"%PDF-1.7 ...", Content_Type="application/pdf")
    with pytest.raises(UnsupportedImage, match="application/pdf"):
        fetch_image(upstream.url("/doc.pdf"), limits=LIMITS, resolver=resolver, allow_loopback=True)


def chain(upstream: Upstream, hops: int) -> str:
    """/r0 -> /r1 -> ... -> /r<hops> which serves the image; returns the first URL."""
    for i in range(hops):
        upstream.routes[f"/r{i}"] = lambda h, i=i: send(h, 302, Location=f"/r{i + 1}")
    upstream.routes[f"/r{hops}"] = lambda h: send(h, 200, PNG, Content_Type="image/png")
    return upstream.url("/r0")


def test_fetch_redirect_chain_within_limit_is_followed(upstream: Upstream) -> None:
    got = fetch(chain(upstream, 3), limits=LIMITS, resolver=resolver, allow_loopback=True)
    assert got.content == PNG
    assert got.final_url == upstream.url("/r3")


def test_fetch_redirect_chain_over_limit_is_refused(upstream: Upstream) -> None:
    with pytest.raises(FetchError, match="redirected more than 3 times"):
        fetch(chain(upstream, 4), limits=LIMITS, resolver=resolver, allow_loopback=True)
    assert len(upstream.hosts) == 4


@pytest.mark.parametrize(
    "location",
    [
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://internal.test/admin",
        "http://metadata.test/",
        "http://[fd00::1]/",
        "http://[::ffff:10.0.0.1]/",
        "file:///etc/passwd",
    ],
)
def test_fetch_redirect_to_blocked_address_is_refused_before_connecting(
    upstream: Upstream, connections: list[tuple], location: str
) -> None:
    upstream.routes["/go"] = lambda h: send(h, 302, Location=location)
    with pytest.raises(BlockedURL) as caught:
        fetch_image(upstream.url("/go"), limits=LIMITS, resolver=resolver, allow_loopback=True)
    assert caught.value.status_code == 400
    assert connections == [("127.0.0.1", upstream.port)]


def test_fetch_og_image_pointing_at_blocked_address_is_refused(upstream: Upstream, connections: list[tuple]) -> None:
    page = b'<html><head><meta property="og:image" content="http://169.254.169.254/x.png"></head></html>'
    upstream.routes["/page"] = lambda h: send(h, 200, page, Content_Type="text/html")
    with pytest.raises(BlockedURL):
        fetch_image(upstream.url("/page"), limits=LIMITS, resolver=resolver, allow_loopback=True)
    assert connections == [("127.0.0.1", upstream.port)]


def test_fetch_body_over_max_bytes_is_cut(upstream: Upstream) -> None:
    def endless_unsized(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.end_headers()  # no Content-Length: the body runs until the server closes
        try:
            for _ in range(64):
                h.wfile.write(b"\xff" * 16 * 1024)
        except OSError:
            pass
        h.close_connection = True

    upstream.routes["/big"] = endless_unsized
    with pytest.raises(FetchTooLarge, match="more than the 65536 byte limit") as caught:
        fetch(upstream.url("/big"), limits=LIMITS, resolver=resolver, allow_loopback=True)
    assert caught.value.status_code == 413


def test_fetch_content_length_over_limit_is_rejected_before_reading(upstream: Upstream) -> None:
    def huge_then_stall(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, Content_Type="image/jpeg", Content_Length=str(10**9))
        time.sleep(3)  # a client that read the body would time out instead

    upstream.routes["/huge"] = huge_then_stall
    started = time.monotonic()
    with pytest.raises(FetchTooLarge, match="1000000000 bytes"):
        fetch(upstream.url("/huge"), limits=LIMITS, resolver=resolver, allow_loopback=True)
    assert time.monotonic() - started < 0.5


def test_fetch_html_over_html_limit_is_cut(upstream: Upstream) -> None:
    page = b"<html><head>" + b"<!-- padding -->" * 2048 + b"</head></html>"
    upstream.routes["/fat"] = lambda h: send(h, 200, page, Content_Type="text/html")
    with pytest.raises(FetchTooLarge, match="16384 byte limit"):
        fetch_image(upstream.url("/fat"), limits=LIMITS, resolver=resolver, allow_loopback=True)


def test_fetch_slow_drip_upstream_is_cut_at_the_deadline(upstream: Upstream) -> None:
    def drip(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, Content_Type="image/png", Content_Length="1000")
        try:
            for _ in range(40):
                h.wfile.write(b"x")
                h.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass

    upstream.routes["/drip"] = drip
    started = time.monotonic()
    with pytest.raises(FetchTimeout) as caught:
        fetch(upstream.url("/drip"), limits=LIMITS, resolver=resolver, allow_loopback=True)
    elapsed = time.monotonic() - started
    assert caught.value.status_code == 504
    assert 0.9 <= elapsed < 1.5


def test_fetch_deadline_spans_the_redirect_chain(upstream: Upstream) -> None:
    def slow_redirect(h: BaseHTTPRequestHandler, target: str) -> None:
        time.sleep(0.4)
        send(h, 302, Location=target)

    upstream.routes["/s0"] = lambda h: slow_redirect(h, "/s1")
    upstream.routes["/s1"] = lambda h: slow_redirect(h, "/s2")
    upstream.routes["/s2"] = lambda h: slow_redirect(h, "/s3")
    upstream.routes["/s3"] = lambda h: send(h, 200, PNG, Content_Type="image/png")
    started = time.monotonic()
    with pytest.raises(FetchTimeout):
        fetch(upstream.url("/s0"), limits=LIMITS, resolver=resolver, allow_loopback=True)
    assert time.monotonic() - started < 1.5


def test_fetch_upstream_404_is_fetch_error_with_status(upstream: Upstream) -> None:
    with pytest.raises(FetchError, match="HTTP 404") as caught:
        fetch(upstream.url("/missing.png"), limits=LIMITS, resolver=resolver, allow_loopback=True)
    assert type(caught.value) is FetchError
    assert caught.value.status_code == 502
    assert caught.value.details == {"status": 404}


def self_signed_tls(directory: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh certificate for name, and a client context trusting only it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client


def test_fetch_https_sends_original_name_as_sni_and_verifies_it(tmp_path: Path, connections: list[tuple]) -> None:
    server_tls, client_tls = self_signed_tls(tmp_path, HOST)
    server_names: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, ctx: server_names.append(name)
    for tls_upstream in serve(server_tls):
        tls_upstream.routes["/img.png"] = lambda h: send(h, 200, PNG, Content_Type="image/png")
        got = fetch_image(
            tls_upstream.url("/img.png"), limits=LIMITS, resolver=resolver, allow_loopback=True, ssl_context=client_tls
        )
        assert got.content == PNG
        assert server_names == [HOST]
        assert tls_upstream.hosts == [f"{HOST}:{tls_upstream.port}"]
        assert connections == [("127.0.0.1", tls_upstream.port)]


def test_fetch_https_certificate_for_another_name_is_rejected(tmp_path: Path) -> None:
    server_tls, client_tls = self_signed_tls(tmp_path, "other.test")
    for tls_upstream in serve(server_tls):
        tls_upstream.routes["/img.png"] = lambda h: send(h, 200, PNG, Content_Type="image/png")
        with pytest.raises(FetchError, match="cannot fetch the URL"):
            fetch(
                tls_upstream.url("/img.png"),
                limits=LIMITS,
                resolver=resolver,
                allow_loopback=True,
                ssl_context=client_tls,
            )
        assert tls_upstream.hosts == []


# --- Issue 11, item 3: compressed bodies the upstream got wrong ---------------------------------------

def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "body", "message"),
    [
        ("gzip", b"this is not gzip data at all", "the upstream sent Content-Encoding gzip but the body is not "
         "valid gzip data"),
        ("gzip", raw_deflate(PNG), "the upstream sent Content-Encoding gzip but the body is not valid gzip data"),
        ("x-gzip", b"\x1f\x8b\x09\x00" + bytes(6) + b"junk",  # compression method 9: not deflate
         "the upstream sent Content-Encoding x-gzip but the body is not valid x-gzip data"),
        ("deflate", b"\xff\xfe not deflate", "the upstream sent Content-Encoding deflate but the body is not "
         "valid deflate data"),
        ("gzip", gzip.compress(PNG)[:-12],
         "the upstream's gzip-compressed body ends before the compressed data does"),
    ],
)
def test_fetch_broken_compressed_body_is_502_with_clear_message(
    upstream: Upstream, encoding: str, body: bytes, message: str
) -> None:
    upstream.routes["/img"] = lambda h: send(h, 200, body, Content_Type="image/png", Content_Encoding=encoding)
    with pytest.raises(FetchError) as caught:
        fetch_image(upstream.url("/img"), limits=LIMITS, resolver=resolver, allow_loopback=True)
    assert type(caught.value).__name__ == "BadContentEncoding"
    assert caught.value.message == message
    assert caught.value.status_code == 502
    assert http_errors.error_response(caught.value).status_code == 502


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("deflate", raw_deflate(PNG)), ("deflate", zlib.compress(PNG)), ("gzip", gzip.compress(PNG))],
)
def test_fetch_compressed_body_is_decoded_raw_deflate_included(upstream: Upstream, encoding: str, body: bytes) -> None:
    upstream.routes["/img"] = lambda h: send(h, 200, body, Content_Type="image/png", Content_Encoding=encoding)
    assert fetch(upstream.url("/img"), limits=LIMITS, resolver=resolver, allow_loopback=True).content == PNG


def test_fetch_raw_deflate_in_one_byte_chunks_is_decoded(upstream: Upstream) -> None:
    body = raw_deflate(PNG)

    def trickle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Content-Encoding", "deflate")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for byte in body:
            h.wfile.write(b"1\r\n" + bytes([byte]) + b"\r\n")
            h.wfile.flush()
        h.wfile.write(b"0\r\n\r\n")

    upstream.routes["/img"] = trickle
    assert fetch(upstream.url("/img"), limits=LIMITS, resolver=resolver, allow_loopback=True).content == PNG


def test_fetch_gzip_bomb_is_cut_at_the_byte_limit(upstream: Upstream) -> None:
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024))
    assert len(bomb) < 16 * 1024
    upstream.routes["/bomb"] = lambda h: send(h, 200, bomb, Content_Type="image/png", Content_Encoding="gzip")
    with pytest.raises(FetchTooLarge, match="more than the 65536 byte limit"):
        fetch(upstream.url("/bomb"), limits=LIMITS, resolver=resolver, allow_loopback=True)


# --- Issue 11, item 4: pages the old parser crashed on ----------------------------------------------

@pytest.mark.parametrize(
    ("content_type", "page"),
    [
        ("text/html", b'<html><head><![if !IE]><meta property="og:image" content="/m.png"><![endif]></head></html>'),
        ("text/html", b'<html><head><meta property="og:image" content="/m.png"><![ unterminated'),
        ("text/html; charset=idna", b'<html><head><meta property="og:image" content="/m.png"></head></html>'),
    ],
)
def test_fetch_image_page_the_old_parser_crashed_on_still_finds_og_image(
    upstream: Upstream, content_type: str, page: bytes
) -> None:
    upstream.routes["/page"] = lambda h: send(h, 200, page, Content_Type=content_type)
    upstream.routes["/m.png"] = lambda h: send(h, 200, PNG, Content_Type="image/png")
    assert fetch_image(upstream.url("/page"), limits=LIMITS, resolver=resolver, allow_loopback=True).content == PNG


# --- Issue 11, item 1: adversarial 1 MiB pages over HTTP, each within a stated bound -------------------
MIB = 1024 * 1024
FETCH_BOUND_SECONDS = 3.0  # fetch over loopback + og:image parse of one 1 MiB page (measured ~0.1 s)
BIG_PAGE_LIMITS = {"timeout": 10.0, "max_bytes": 64 * 1024, "max_redirects": 3, "max_html_bytes": 2 * MIB}


def _repeat(unit: bytes, size: int = MIB) -> bytes:
    return (unit * (size // len(unit) + 1))[:size]


ADVERSARIAL_PAGES = {
    "unclosed_a_tags": _repeat(b"<a "),  # 18 KB of this took 3.6 s in the old parser
    "comment_openers": _repeat(b"<!--"),  # 2 MB of this kept a core busy for over 120 s
    "marked_section_openers": _repeat(b"<!["),
    "unclosed_attribute_value": b'<meta property="og:image" content="' + _repeat(b"x", MIB - 40),
    "unclosed_single_quotes": _repeat(b"<a href='"),
    "deep_divs_then_stray_p_ends": _repeat(b"<div>", MIB // 2) + _repeat(b"</p>", MIB - MIB // 2),
    "nested_tables": _repeat(b"<table><tr><td>"),
    "misnested_formatting": _repeat(b"<b><i></b></i>"),
}

FETCH_CHILD = """
import json, sys, time
from moodboard.errors import MoodboardError
from moodboard.fetch import FetchLimits, fetch_image
job = json.load(sys.stdin)
limits = FetchLimits(**job["limits"])
for name, url in job["urls"].items():
    started = time.perf_counter()
    try:
        got = fetch_image(url, limits=limits, resolver=lambda host, port: ["127.0.0.1"], allow_loopback=True)
        outcome = f"image of {len(got.content)} bytes"
    except MoodboardError as exc:
        outcome = f"{type(exc).__name__}: {exc.message}"
    print(json.dumps({"name": name, "seconds": time.perf_counter() - started, "outcome": outcome}), flush=True)
"""


@pytest.fixture(scope="module")
def adversarial_fetches() -> Iterator[dict[str, dict]]:
    """Serve every adversarial page from 127.0.0.1 (plus one whose og:image comes before 1 MiB of junk),
    and fetch them all with fetch_image in a child process, killed if it overruns: a runaway parse must
    fail the test, not hang the run."""
    for server in serve():
        urls = {}
        for name, page in ADVERSARIAL_PAGES.items():
            server.routes[f"/{name}"] = lambda h, page=page: send(h, 200, page, Content_Type="text/html")
            urls[name] = server.url(f"/{name}")
        lead = b'<html><head><meta property="og:image" content="/lead.png">' + ADVERSARIAL_PAGES["unclosed_a_tags"]
        server.routes["/og_image_then_junk"] = lambda h: send(h, 200, lead, Content_Type="text/html")
        server.routes["/lead.png"] = lambda h: send(h, 200, PNG, Content_Type="image/png")
        urls["og_image_then_junk"] = server.url("/og_image_then_junk")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOODBOARD_")}
        env["PYTHONPATH"] = str(Path(moodboard.__file__).resolve().parents[1])
        job = json.dumps({"urls": urls, "limits": BIG_PAGE_LIMITS}).encode()
        timeout = 10 + FETCH_BOUND_SECONDS * len(urls)
        try:
            done = subprocess.run([sys.executable, "-c", FETCH_CHILD], input=job, capture_output=True, env=env,
                                  timeout=timeout, check=False)
            out, err = done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            out, err = exc.stdout or b"", b"killed after %d s" % timeout
        results = {line["name"]: line for line in map(json.loads, out.decode().splitlines())}
        results["_stderr"] = {"text": err.decode(errors="replace")[-2000:]}
        yield results


@pytest.mark.parametrize("name", sorted(ADVERSARIAL_PAGES))
def test_fetch_image_of_adversarial_1_mib_page_answers_within_bound(
    name: str, adversarial_fetches: dict[str, dict]
) -> None:
    result = adversarial_fetches.get(name)
    assert result is not None, f"{name} did not finish: {adversarial_fetches['_stderr']['text']}"
    assert result["outcome"] == "UnsupportedImage: the page has no og:image"
    assert result["seconds"] < FETCH_BOUND_SECONDS


def test_fetch_image_finds_og_image_ahead_of_1_mib_of_junk(adversarial_fetches: dict[str, dict]) -> None:
    result = adversarial_fetches.get("og_image_then_junk")
    assert result is not None, adversarial_fetches["_stderr"]["text"]
    assert result["outcome"] == f"image of {len(PNG)} bytes"
    assert result["seconds"] < FETCH_BOUND_SECONDS
