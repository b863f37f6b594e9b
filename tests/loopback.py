"""HTTP servers on 127.0.0.1 for the tests that need something to fetch from (tests dial loopback only)."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that writes no log line per request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def loopback_server(handler: Callable[..., BaseHTTPRequestHandler], *, tls: ssl.SSLContext | None = None,
                    poll_interval: float = 0.5) -> Iterator[ThreadingHTTPServer]:
    """`handler` served from a free port of 127.0.0.1 by a daemon thread during the `with` block
    (over TLS with `tls`), then shut down and closed."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(poll_interval,), daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def base_url(server: ThreadingHTTPServer) -> str:
    """http://127.0.0.1:PORT of a loopback_server (no trailing slash)."""
    return f"http://127.0.0.1:{server.server_address[1]}"
