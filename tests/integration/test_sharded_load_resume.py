"""A sharded local load (`moodboard load --workers N`) killed with SIGKILL after some shards finished:
the bundle it would replace is untouched, `--resume` embeds only the unfinished shards, and the
bundle it publishes equals an uninterrupted load's (same ids, same vectors). Tiny ONNX model, a
generated catalog, one image served from 127.0.0.1 that hangs until the test lets it go (so the kill
lands while a known shard is in flight)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from moodboard.embedder import Embedder
from moodboard.index import ProductIndex, verify
from moodboard.ingest import load_catalog
from moodboard.settings import Settings
from moodboard_local.demo_catalog import generate_demo_catalog
from PIL import Image

from tests.loopback import QuietHandler, base_url, loopback_server

REPO = Path(__file__).resolve().parents[2]
SHARD_SIZE = 4
SEED_ROWS = 4
# Catalog rows: 4 seed rows (kept from the bundle being replaced), then 10 local, the hanging URL
# product, 10 local: 21 to embed in shards of 4, the URL product third in shard 2.
SLOW_SHARD = 2
SHARDS = 6


@dataclass
class SlowImage:
    """An image on 127.0.0.1 that answers only once `release` is set."""

    url: str
    requested: threading.Event
    release: threading.Event


@pytest.fixture
def slow() -> Iterator[SlowImage]:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), (200, 40, 90)).save(buffer, "JPEG")
    body = buffer.getvalue()
    requested, release = threading.Event(), threading.Event()

    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            requested.set()
            release.wait(timeout=120)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with loopback_server(Handler) as server:
        try:
            yield SlowImage(f"{base_url(server)}/slow.jpg", requested, release)
        finally:
            release.set()


def write_catalogs(folder: Path, slow_url: str) -> tuple[Path, Path]:
    """The seed catalog (first rows) and the full one, beside the same images."""
    generated = generate_demo_catalog(folder, per_category=4)
    with generated.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    slow_row = {**rows[0], "id": "slow-url", "title": "Slow", "image": slow_url}
    full = rows[:14] + [slow_row] + rows[14:]

    def write(name: str, chosen: list[dict[str, str]]) -> Path:
        path = folder / name
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(chosen)
        return path

    return write("seed.csv", rows[:SEED_ROWS]), write("full.csv", full)


def cli(*args: str, env: dict[str, str], **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "moodboard_local.cli", "load", *args], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def test_a_killed_sharded_load_resumes_only_its_unfinished_shards_and_equals_an_uninterrupted_one(
        tmp_path: Path, tiny_bundle: Path, slow: SlowImage) -> None:
    seed, full = write_catalogs(tmp_path / "catalog", slow.url)
    settings = Settings(cache_dir=tmp_path / "cache", fetch_allow_loopback=True)
    killed_out, clean_out = tmp_path / "killed" / "index", tmp_path / "clean" / "index"
    load_catalog(seed, Embedder.load(tiny_bundle), killed_out, settings=settings)
    shutil.copytree(killed_out, clean_out)
    before = files(killed_out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "functions"), str(REPO)]),
           "MOODBOARD_CACHE_DIR": str(tmp_path / "cache"), "MOODBOARD_FETCH_ALLOW_LOOPBACK": "true",
           "MOODBOARD_FETCH_TIMEOUT_SECONDS": "120"}
    common = ["--model", str(tiny_bundle), "--shard-size", str(SHARD_SIZE)]
    jobs = killed_out.parent / ".index.loads"

    # 1. One worker; killed (the whole process group, as a lost machine would be) while shard 2 waits
    #    for its URL image, shards 0 and 1 finished.
    process = cli(str(full), "--out", str(killed_out), "--workers", "1", *common, env=env, start_new_session=True)
    try:
        assert slow.requested.wait(timeout=120), "the load never reached the slow image"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    (job,) = [p.name for p in jobs.iterdir() if p.name != "map-results"]
    done = sorted(int(p.parent.name) for p in (jobs / job / "shards").glob("*/done.json"))
    assert done == list(range(SLOW_SHARD))
    assert files(killed_out) == before and verify(killed_out)  # the bundle served is the old one, whole
    slow.release.set()

    # 2. Resumed: only the unfinished shards are embedded.
    resumed = cli("--resume", job, "--out", str(killed_out), "--workers", "1", *common, "--json", env=env)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    report = json.loads(out)
    assert report["shards_skipped"] == done
    assert report["shards_embedded"] == list(range(SLOW_SHARD, SHARDS))
    assert report["products_embedded_now"] == 21 - SHARD_SIZE * SLOW_SHARD  # shards 2-5: 4 + 4 + 4 + 1
    assert report["embedded"] == 21 and report["reused"] == SEED_ROWS and report["loaded"] == 25
    assert ProductIndex.open(killed_out).version == report["version"]

    # 3. The same catalog loaded without interruption, two workers.
    clean = cli(str(full), "--out", str(clean_out), "--workers", "2", *common, "--json", env=env)
    out, err = clean.communicate(timeout=300)
    assert clean.returncode == 0, err
    assert json.loads(out)["shards_embedded"] == list(range(SHARDS))

    resumed_index, clean_index = ProductIndex.open(killed_out), ProductIndex.open(clean_out)
    ids = sorted(p.id for p in clean_index.products())
    assert sorted(p.id for p in resumed_index.products()) == ids and len(ids) == 25
    assert np.allclose(resumed_index.vectors_at([resumed_index.label_of(i) for i in ids]),
                       clean_index.vectors_at([clean_index.label_of(i) for i in ids]), atol=1e-6)
    assert resumed_index.categories() == clean_index.categories()


def test_resume_of_an_unknown_job_is_a_one_line_error(tmp_path: Path, tiny_bundle: Path) -> None:
    from moodboard_local.cli import main

    assert main(["load", "--resume", "no-such-job", "--out", str(tmp_path / "index"), "--model",
                 str(tiny_bundle)]) == 2
