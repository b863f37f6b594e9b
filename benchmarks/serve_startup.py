"""Start-up time of `moodboard serve`: launch to the first 200 from /health, first start vs restart.

Issue 13 point 6: with the clothing dataset's index already built, a restart must be healthy in under
5 s. This runs serve twice on one data folder and prints both times side by side: the first start
(empty data folder and build cache: it embeds and publishes the catalog) is the baseline, the second
finds its index, tables and tokens again.

    python -m benchmarks.serve_startup                      # tiny model, ../shared/data/clothing-dataset
    python -m benchmarks.serve_startup --model artifacts/model --dataset PATH --work /tmp/startup

Only loopback is used: serve listens on 127.0.0.1 and its fake AWS is the embedded moto server.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.perf.common import REPO, child_env, free_port

DEFAULT_DATASET = REPO.parent / "shared" / "data" / "clothing-dataset"


def timed_start(model: Path, work: Path, dataset: Path, *, timeout: float) -> float:
    """Seconds from launching serve to its first 200 from /health; the server is stopped after."""
    port = free_port()
    env = {**child_env(), "XDG_CACHE_HOME": str(work / "cache"), "MOODBOARD_DEMO_DATASET": str(dataset)}
    command = [sys.executable, "-m", "moodboard_local.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--model", str(model), "--data-dir", str(work / "data")]
    log = work / "serve.log"
    with log.open("ab") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"serve exited with {process.returncode}; see {log}")
            if time.perf_counter() - started > timeout:
                raise SystemExit(f"serve was not healthy within {timeout:.0f} s; see {log}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    finally:
        process.terminate()  # serve saves its data folder on SIGTERM
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model bundle (default: the tiny random CLIP, exported here)")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="catalog serve loads on its first start")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a new temporary one)")
    parser.add_argument("--restarts", type=int, default=2, help="restarts to time after the first start")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    if not (args.dataset / "images.csv").is_file() and not any(args.dataset.glob("*.csv")):
        raise SystemExit(f"no catalog at {args.dataset}")
    work = args.work or Path(tempfile.mkdtemp(prefix="moodboard-startup-"))
    work.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        model = work / "tiny-model"
        if not (model / "manifest.json").is_file():
            subprocess.run([sys.executable, "-m", "moodboard_local.cli", "export-model", "--tiny", "--out", str(model)],
                           check=True, cwd=REPO)
    first = timed_start(model.resolve(), work, args.dataset.resolve(), timeout=args.timeout)
    restarts = [timed_start(model.resolve(), work, args.dataset.resolve(), timeout=args.timeout)
                for _ in range(args.restarts)]
    print(f"serve start-up, launch to the first 200 from /health ({args.dataset.name}, model {model.name}, {work})")
    print(f"  first start, empty data folder (baseline): {first:7.1f} s")
    for number, seconds in enumerate(restarts, 1):
        print(f"  restart {number}, data folder kept:            {seconds:7.1f} s")
    print(f"  target: a restart under 5 s -> {'met' if max(restarts, default=first) < 5 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
