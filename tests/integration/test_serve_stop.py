"""`moodboard serve` stopped with SIGTERM (how a service manager, a container runtime or a test
stops it) keeps what was written just before: the data folder is saved on the way out, not only by
the autosave every 2 s. uvicorn re-raises the SIGTERM it caught after its own shutdown; with
Python's default handler that ended the process before serve's cleanup saved anything."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
TOKEN = "serve-stop-admin-token"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(tiny_bundle: Path, demo_catalog: Path, root: Path, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOODBOARD_", "POWERTOOLS_"))}
    env.update({
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "functions"), str(REPO), env.get("PYTHONPATH")])),
        "XDG_CACHE_HOME": str(root / "xdg"),
        "MOODBOARD_CACHE_DIR": str(root / "cache"),
        "MOODBOARD_ADMIN_TOKEN": TOKEN,
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-credentials"),
    })
    command = [sys.executable, "-m", "moodboard_local.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--model", str(tiny_bundle), "--catalog", str(demo_catalog), "--aws", "moto",
               "--data-dir", str(root / "data")]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    pytest.fail(f"serve did not start:\n{log.read_text()[-3000:]}")


def test_a_change_made_just_before_sigterm_is_there_after_a_restart(tiny_bundle: Path, demo_catalog: Path,
                                                                     tmp_path: Path) -> None:
    port = free_port()
    admin = {"Authorization": f"Bearer {TOKEN}"}
    process = start(tiny_bundle, demo_catalog, tmp_path, port, tmp_path / "serve-1.log")
    try:
        made = httpx.post(f"http://127.0.0.1:{port}/search-urls", headers=admin, timeout=30,
                          json={"url": "https://pins.example/last-second.jpg", "category": "dress"})
        assert made.status_code == 201, made.text
    finally:
        process.send_signal(signal.SIGTERM)  # at once: well inside the 2 s autosave interval
        code = process.wait(timeout=60)
    assert code in (0, 128 + signal.SIGTERM, -signal.SIGTERM), code

    process = start(tiny_bundle, demo_catalog, tmp_path, port, tmp_path / "serve-2.log")
    try:
        urls = httpx.get(f"http://127.0.0.1:{port}/search-urls", headers=admin, timeout=30).json()["items"]
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert [u["url"] for u in urls] == ["https://pins.example/last-second.jpg"]
