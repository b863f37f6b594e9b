"""The one command: run the sections, print the tables, write the full figures as JSON.

    python -m benchmarks.perf [--quick | --full] [--only embed,index,query,cold,loader]
                              [--out benchmarks/results/perf.json] [--cache benchmarks/.cache]

A section that fails is recorded with its error and the run goes on; the exit code is 1 when any
section failed (never because a target was missed: the numbers are the report, not a test).
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.perf.common import DEFAULT_CACHE, PROFILES, REPO, SECTIONS, Context, ensure_path, load_average, progress
from benchmarks.perf.proc import OthersCpu

MODULES = {"embed": "embedding", "index": "index", "query": "query_e2e", "cold": "cold_start", "loader": "loader"}
DEFAULT_OUT = REPO / "benchmarks" / "results" / "perf.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CI smoke: tiny bundle, small sizes (about a minute)")
    mode.add_argument("--full", action="store_true", help="add the 1M index and the 20k catalog (an hour or more)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections ({','.join(SECTIONS)})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file for the full figures")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where built bundles and indexes are kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    args.sections = [s for s in SECTIONS if s in only]
    return args


def targets_of(sections: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row that carries a target, with its section."""
    return [{"section": name, **r} for name, result in sections.items()
            for r in result.get("rows", []) if r.get("target")]


def write(report: dict[str, Any], out: Path, started: float, *, complete: bool) -> None:
    """The JSON (all figures) and the Markdown tables next to it."""
    from benchmarks.perf import table

    report["complete"] = complete
    report["targets"] = targets_of(report["sections"])
    report["seconds"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(table.to_markdown(report), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_path()
    from benchmarks.perf import machine, table

    profile = PROFILES["quick" if args.quick else "full" if args.full else "default"]
    ctx = Context(profile, cache=args.cache, seed=args.seed)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "suite": "moodboard perf (issue 6)", "mode": profile.name, "profile": profile.__dict__,
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine.describe(), "sections": {},
    }
    failed = False
    for name in args.sections:
        progress.print(f"[bold]{name}[/] ({profile.name})")
        section_started = time.perf_counter()
        load_before = load_average()
        others = OthersCpu()
        try:
            with others:
                module = importlib.import_module(f"benchmarks.perf.{MODULES[name]}")
                result = module.run(ctx)
        except Exception as exc:  # noqa: BLE001 - one failed section must not lose the others
            failed = True
            result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            progress.print(f"[red]{name} failed[/]: {type(exc).__name__}: {exc}")
        result["seconds"] = round(time.perf_counter() - section_started, 1)
        result["load_average"] = {"before": load_before, "after": load_average()}
        result["others_cpu_share"] = None if others.share is None else round(others.share, 3)
        report["sections"][name] = ctx.results[name] = result
        progress.print(f"  {name} took {result['seconds']:.0f} s")
        write(report, args.out, started, complete=False)  # a long run's finished sections survive an interruption
    write(report, args.out, started, complete=True)
    from rich.console import Console

    table.print_run(Console(width=200), report)
    progress.print(f"figures written to {args.out} (tables as Markdown: {args.out.with_suffix('.md')})")
    return 1 if failed else 0
