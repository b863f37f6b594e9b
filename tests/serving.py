"""`moodboard serve` in a subprocess for the tests that need the real local stack over HTTP: started on
127.0.0.1 with its output in a log file, waited for until it answers, always stopped."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
START_SECONDS = 180.0
STOP_SECONDS = 30.0
READY_LINE = "moodboard is running at"
LOG_TAIL = 4000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServeProcess:
    """A running `moodboard serve`: its base URL (no trailing slash), process and log file; as a context
    manager, stopped at the end of the `with` block whatever happens."""

    url: str
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def moto_endpoint(self) -> str:
        """The embedded moto server's URL, as serve's log names it (with `--aws moto`)."""
        found = re.search(r"embedded moto server at (http://127\.0\.0\.1:\d+)", self.log_text())
        assert found, self.log_text()[-LOG_TAIL:]
        return found.group(1)

    def stop(self, timeout: float = STOP_SECONDS) -> int:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds; its exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def running_serve(args: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path, port: int | None = None,
                drop: tuple[str, ...] = ("MOODBOARD_", "AWS_"),
                start_seconds: float = START_SECONDS) -> ServeProcess:
    """`moodboard serve --host 127.0.0.1 --port PORT ARGS` (a free port unless given), once its log says it
    is running and /health answers 200. Its environment: this process's less the variables starting
    with one of `drop`, with functions/ and the repository on PYTHONPATH, and `env` set. A serve that
    exits or does not answer in `start_seconds` is stopped and fails the test with its log's tail."""
    port = port or free_port()
    environ = {key: value for key, value in os.environ.items() if not key.startswith(drop)}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "functions"), str(REPO),
                                                          environ.get("PYTHONPATH")]))
    environ.update(env)
    command = [sys.executable, "-m", "moodboard_local.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               *args]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=environ, stdout=out, stderr=subprocess.STDOUT)
    served = ServeProcess(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + start_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"moodboard serve exited with {process.returncode}:\n{served.log_text()[-LOG_TAIL:]}")
        if READY_LINE in served.log_text():
            try:
                if httpx.get(f"{served.url}/health", timeout=2).status_code == 200:
                    return served
            except httpx.TransportError:
                pass
        time.sleep(0.3)
    served.stop()
    pytest.fail(f"moodboard serve did not answer /health in {start_seconds:.0f} s:\n{served.log_text()[-LOG_TAIL:]}")

