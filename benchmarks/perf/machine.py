"""The machine a run happened on: cores, CPU model and features, memory, load, library versions.

Absolute figures only mean something next to this; the CPU flags (AVX2, AVX-512, VNNI) decide
how fast onnxruntime's fp32 and int8 kernels can be.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
from importlib import metadata
from typing import Any

from benchmarks.perf.common import load_average

PACKAGES = ("numpy", "onnxruntime", "torch", "transformers", "hnswlib", "tokenizers", "Pillow", "fastapi",
            "uvicorn", "httpx", "pydantic")
FLAGS_OF_INTEREST = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")


def cpuinfo() -> dict[str, Any]:
    """CPU model, nominal MHz and the SIMD flags that matter, from /proc/cpuinfo (Linux)."""
    info: dict[str, Any] = {"model": platform.processor() or platform.machine(), "mhz": None, "flags": []}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and info["model"] in (platform.processor(), platform.machine()):
            info["model"] = value
        elif key == "cpu MHz" and info["mhz"] is None:
            info["mhz"] = float(value)
        elif key == "flags" and not info["flags"]:
            flags = set(value.split())
            info["flags"] = [f for f in FLAGS_OF_INTEREST if f in flags]
    return info


def memory_total_bytes() -> int | None:
    """MemTotal from /proc/meminfo."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def versions() -> dict[str, str | None]:
    """Installed versions of the libraries whose speed is measured."""
    found: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def blas() -> list[dict[str, Any]]:
    """numpy's BLAS (library, version, kernel architecture, threads) via threadpoolctl, if installed,
    and any OPENBLAS_* variables set (some machines pin an older kernel, which slows exact search)."""
    found: list[dict[str, Any]] = []
    try:
        from threadpoolctl import threadpool_info

        importlib.import_module("numpy")  # loads the BLAS that threadpoolctl looks for
        found = [{k: v for k, v in info.items() if k != "filepath"} for info in threadpool_info()]
    except ImportError:
        pass
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}
    return found + ([{"environment": env}] if env else [])


def describe() -> dict[str, Any]:
    """Everything above in one dict (the "machine" section of the JSON)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    cpu = cpuinfo()
    return {
        "cpu_model": cpu["model"],
        "cpu_mhz": cpu["mhz"],
        "cpu_flags": cpu["flags"],
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_bytes": memory_total_bytes(),
        "platform": platform.platform(),
        "load_average": load_average(),
        "versions": versions(),
        "blas": blas(),
    }


def nominal_peak_gflops(machine: dict[str, Any]) -> float | None:
    """A nominal fp32 peak: cores x MHz x FLOPs per cycle (two FMA units: 32 with AVX2, 64 with
    AVX-512). A yardstick for "how far from compute-bound", not a measured figure."""
    mhz, cores = machine.get("cpu_mhz"), machine.get("usable_cores")
    if not mhz or not cores:
        return None
    flags = set(machine.get("cpu_flags") or [])
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 16
    return cores * mhz * per_cycle / 1000
