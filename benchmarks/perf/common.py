"""What every section shares: the run profile (sizes per mode), the run context, timing and rows.

A row is one figure next to its same-run baseline. `ratio` is a speed-up (baseline / value for
times, value / baseline for rates) unless the row says `ratio_kind="relative"` (value / baseline,
e.g. the peak memory of a 20k catalog over that of a 5k one).
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO / "functions"
DEFAULT_CACHE = REPO / "benchmarks" / ".cache"
SECTIONS = ("embed", "index", "query", "cold", "loader")
# Pause before each timed block so the previous engine's spinning worker threads have gone idle.
SETTLE_SECONDS = 0.05

# stderr: progress lines; stdout carries the tables (and, in child processes, the JSON result).
progress = Console(stderr=True, highlight=False)


def ensure_path() -> None:
    """Make `moodboard`, `search` (functions/) and `model_export` importable, as pytest does."""
    for path in (str(FUNCTIONS), str(REPO)):
        if path not in sys.path:
            sys.path.insert(0, path)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a child server to listen on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env() -> dict[str, str]:
    """Environment for child processes: functions/ and the repo on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FUNCTIONS), str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


@dataclass(frozen=True)
class Profile:
    """Sizes and repetitions of one mode (quick / default / full)."""

    name: str
    model_size: str  # "tiny" (test model) or "base" (ViT-B/32 shape, random weights)
    reps: int  # batch-1 latency samples per contender
    throughput_reps: int  # timed batches per contender and batch size
    batch_sizes: tuple[int, ...]
    sweep_reps: int  # samples per session-option configuration
    index_sizes: tuple[int, ...]
    filter_size: int  # the index size the filtered-search shares are measured at
    index_queries: int
    e2e_size: int
    e2e_requests: int
    cold_size: int
    cold_reps: int
    loader_sizes: tuple[int, int]  # generated catalogs: memory at the small vs the large one (int8)
    loader_fp32_size: int  # generated catalog loaded with fp32 too (fp32 vs int8)
    dataset_limit: int | None  # clothing-dataset images loaded (None: all)


PROFILES = {
    "quick": Profile("quick", "tiny", reps=5, throughput_reps=1, batch_sizes=(16,), sweep_reps=3,
                     index_sizes=(2_000,), filter_size=2_000, index_queries=30, e2e_size=2_000, e2e_requests=8,
                     cold_size=2_000, cold_reps=1, loader_sizes=(40, 160), loader_fp32_size=40, dataset_limit=32),
    "default": Profile("default", "base", reps=30, throughput_reps=3, batch_sizes=(16, 32), sweep_reps=20,
                       index_sizes=(10_000, 100_000), filter_size=100_000, index_queries=200,
                       e2e_size=100_000, e2e_requests=60, cold_size=100_000, cold_reps=3,
                       loader_sizes=(2_000, 8_000), loader_fp32_size=2_000, dataset_limit=1_000),
    "full": Profile("full", "base", reps=50, throughput_reps=5, batch_sizes=(16, 32), sweep_reps=30,
                    index_sizes=(10_000, 100_000, 1_000_000), filter_size=1_000_000, index_queries=200,
                    e2e_size=100_000, e2e_requests=100, cold_size=100_000, cold_reps=3,
                    loader_sizes=(5_000, 20_000), loader_fp32_size=5_000, dataset_limit=None),
}


@dataclass
class Context:
    """One run: its profile, where built fixtures are cached, and results of earlier sections."""

    profile: Profile
    cache: Path = DEFAULT_CACHE
    seed: int = 0
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return self.profile.name == "quick"


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: how busy the shared machine was (noise indicator)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def summarize(samples_s: list[float]) -> dict[str, Any]:
    """p50/p95/p99/mean in milliseconds, plus the samples (ms, rounded)."""
    ms = sorted(s * 1000 for s in samples_s)
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50": round(statistics.median(ms), 3),
        "p95": round(percentile(ms, 95), 3),
        "p99": round(percentile(ms, 99), 3),
        "mean": round(statistics.fmean(ms), 3),
        "min": round(ms[0], 3),
        "samples_ms": [round(x, 3) for x in ms],
    }


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted values (numpy's default method)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


Contender = Callable[[], Any] | tuple[Callable[[], Any], Callable[[], contextlib.AbstractContextManager]]


def interleaved(contenders: dict[str, Contender], reps: int, warmup: int = 2,
                block: int = 5) -> dict[str, dict[str, Any]]:
    """Time each contender `reps` times in alternating blocks, so load changes on the shared machine
    hit every contender alike and the ratios stay fair. Blocks (with an untimed call at the start
    of each) rather than single alternating calls: onnxruntime and PyTorch keep their worker
    threads spinning for a while after a call, which would tax whichever engine runs next.
    A contender may be `(fn, context)`: each of its blocks runs inside `context()` (e.g. a BLAS
    thread limit), which stays out of the timings. Returns summarize() per contender."""
    plan = {name: c if isinstance(c, tuple) else (c, contextlib.nullcontext) for name, c in contenders.items()}
    for fn, context in plan.values():
        with context():
            for _ in range(warmup):
                fn()
    samples: dict[str, list[float]] = {name: [] for name in plan}
    gc.collect()
    gc.disable()
    try:
        while any(len(values) < reps for values in samples.values()):
            for name, (fn, context) in plan.items():
                todo = min(block, reps - len(samples[name]))
                if todo <= 0:
                    continue
                with context():
                    if len(plan) > 1:
                        time.sleep(SETTLE_SECONDS)
                        fn()
                    for _ in range(todo):
                        started = time.perf_counter()
                        fn()
                        samples[name].append(time.perf_counter() - started)
    finally:
        gc.enable()
    return {name: summarize(values) for name, values in samples.items()}


def one_blas_thread() -> Callable[[], contextlib.AbstractContextManager] | None:
    """A context factory limiting numpy's BLAS to one thread (threadpoolctl), or None without it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return lambda: threadpool_limits(limits=1, user_api="blas")


def time_once(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call took, and its result."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def row(name: str, value: float | None, unit: str, *, baseline: str | None = None,
        baseline_value: float | None = None, better: str = "lower", ratio_kind: str = "speedup",
        target: str | None = None, met: bool | None = None, note: str | None = None) -> dict[str, Any]:
    """One figure next to its baseline. `better` says which direction is good ("lower" for times
    and memory, "higher" for rates and recall); the speed-up ratio is >1 when the figure beats its
    baseline. `ratio_kind="relative"` gives value / baseline instead."""
    ratio = None
    if value is not None and baseline_value not in (None, 0) and value != 0:
        if ratio_kind == "relative":
            ratio = value / baseline_value
        else:
            ratio = baseline_value / value if better == "lower" else value / baseline_value
    return {
        "name": name, "value": _round(value), "unit": unit, "baseline": baseline,
        "baseline_value": _round(baseline_value), "ratio": _round(ratio, 3), "ratio_kind": ratio_kind,
        "better": better, "target": target, "met": met, "note": note,
    }


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None:
        return None
    return float(f"{value:.{digits}g}") if abs(value) < 1 else round(float(value), 3)


def mib(n_bytes: float) -> float:
    return n_bytes / (1024 * 1024)
