"""`moodboard serve` stopped with SIGTERM (how a service manager, a container runtime or a test
stops it) keeps what was written just before: the data folder is saved on the way out, not only by
the autosave every 2 s. uvicorn re-raises the SIGTERM it caught after its own shutdown; with
Python's default handler that ended the process before serve's cleanup saved anything."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.serving import ServeProcess, free_port, running_serve

TOKEN = "serve-stop-admin-token"

pytestmark = pytest.mark.slow


def serve(tiny_bundle: Path, demo_catalog: Path, root: Path, port: int, log: Path) -> ServeProcess:
    env = {
        "XDG_CACHE_HOME": str(root / "xdg"),
        "MOODBOARD_CACHE_DIR": str(root / "cache"),
        "MOODBOARD_ADMIN_TOKEN": TOKEN,
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-credentials"),
    }
    args = ["--model", str(tiny_bundle), "--catalog", str(demo_catalog), "--aws", "moto",
            "--data-dir", str(root / "data")]
    return running_serve(args, env=env, cwd=root, log=log, port=port, drop=("AWS_", "MOODBOARD_", "POWERTOOLS_"))


def test_a_change_made_just_before_sigterm_is_there_after_a_restart(tiny_bundle: Path, demo_catalog: Path,
                                                                     tmp_path: Path) -> None:
    port = free_port()
    admin = {"Authorization": f"Bearer {TOKEN}"}
    with serve(tiny_bundle, demo_catalog, tmp_path, port, tmp_path / "serve-1.log") as served:
        try:
            made = httpx.post(f"{served.url}/search-urls", headers=admin, timeout=30,
                              json={"url": "https://pins.example/last-second.jpg", "category": "dress"})
            assert made.status_code == 201, made.text
        finally:
            code = served.stop(timeout=60)  # SIGTERM at once: well inside the 2 s autosave interval
    assert code in (0, 128 + signal.SIGTERM, -signal.SIGTERM), code

    with serve(tiny_bundle, demo_catalog, tmp_path, port, tmp_path / "serve-2.log") as served:
        urls = httpx.get(f"{served.url}/search-urls", headers=admin, timeout=30).json()["items"]
    assert [u["url"] for u in urls] == ["https://pins.example/last-second.jpg"]
