"""Rich tables of a run: the machine, then one table per section (figure, baseline, ratio, target)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.perf.common import mib

TITLES = {"embed": "1. Embedding", "index": "2. Index (structured vectors)", "query": "3. Query end to end",
          "cold": "4. Cold start", "loader": "5. Loader"}


def fmt(value: float | None, unit: str = "") -> str:
    """A figure with its unit, at a precision that suits its size."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 0.01 or value == 0:
        text = f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    else:
        text = f"{value:.2e}"
    return f"{text} {unit}".strip()


def ratio_text(r: dict[str, Any]) -> str:
    """'2.10x faster' / '0.80x (slower)' for speed-ups, '1.02x' for relative ratios."""
    ratio = r.get("ratio")
    if ratio is None:
        return "-"
    if r.get("ratio_kind") == "relative":
        return f"{ratio:.2f}x"
    word = {"lower": "faster", "higher": "better"}[r.get("better", "lower")]
    if r.get("unit") in ("MiB", "GiB", "bytes"):
        word = "smaller"
    return f"{ratio:.2f}x {word}" if ratio >= 1 else f"{ratio:.2f}x (worse)"


def target_text(r: dict[str, Any]) -> str:
    if not r.get("target"):
        return ""
    mark = {True: "[green]met[/]", False: "[red]MISSED[/]", None: "?"}[r.get("met")]
    return f"{mark} ({r['target']})"


def print_machine(console: Console, machine: dict[str, Any], profile: str) -> None:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    console.print(f"[bold]machine[/]: {machine['cpu_model']} ({', '.join(machine['cpu_flags'])}), "
                  f"{machine['usable_cores']} of {machine['cores']} cores usable, "
                  f"{mib(machine['memory_bytes'] or 0) / 1024:.0f} GiB, load average {machine['load_average']}")
    console.print(f"[bold]mode[/]: {profile}; {versions}")


def print_section(console: Console, name: str, result: dict[str, Any]) -> None:
    """One section's rows as a table (or its error / skip note)."""
    if "error" in result:
        console.print(f"[bold]{TITLES.get(name, name)}[/]: [red]failed[/] {result['error']}")
        return
    share = result.get("others_cpu_share")
    title = TITLES.get(name, name) + (f" (other processes: {share * 100:.0f}% of the CPU)" if share is not None else "")
    table = Table(title=title, title_justify="left", show_lines=False, expand=False)
    for column, justify in (("figure", "left"), ("value", "right"), ("baseline", "left"), ("ratio", "right"),
                            ("target", "left"), ("note", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for r in result.get("rows", []):
        baseline = f"{r['baseline']}: {fmt(r['baseline_value'], r['unit'])}" if r.get("baseline") else ""
        table.add_row(r["name"], fmt(r["value"], r["unit"]), baseline, ratio_text(r), target_text(r),
                      r.get("note") or "")
    console.print(table)
    for note in result.get("notes", []) + result.get("recommendations", []):
        console.print(f"  - {note}")


def print_run(console: Console, report: dict[str, Any]) -> None:
    """The whole report: machine, sections, then the targets summary."""
    print_machine(console, report["machine"], report["mode"])
    for name, result in report["sections"].items():
        print_section(console, name, result)
    targets = report.get("targets", [])
    if targets:
        met = sum(1 for t in targets if t["met"])
        console.print(f"[bold]targets[/]: {met} of {len(targets)} met")
        for t in targets:
            if not t["met"]:
                console.print(f"  [red]missed[/] {t['name']}: {fmt(t['value'], t['unit'])}"
                              f" (target {t['target']})")
    console.print(f"run took {report['seconds']:.0f} s")


def _plain(text: str) -> str:
    return text.replace("[green]", "").replace("[red]", "").replace("[/]", "").replace("|", "\\|")


def to_markdown(report: dict[str, Any]) -> str:
    """The run as Markdown (machine line, one table per section, notes, targets) for docs/performance.md."""
    m = report["machine"]
    lines = [(f"Machine: {m['cpu_model']} ({', '.join(m['cpu_flags'])}), {m['usable_cores']} of {m['cores']} "
              f"cores, {mib(m['memory_bytes'] or 0) / 1024:.0f} GiB; load average at start {m['load_average']}; "
              f"mode `{report['mode']}`; run took {report['seconds']:.0f} s; {report['started']}."), ""]
    for name, result in report["sections"].items():
        lines.append(f"### {TITLES.get(name, name)}")
        lines.append("")
        if "error" in result:
            lines += [f"Failed: `{result['error']}`", ""]
            continue
        load = result.get("load_average", {})
        share = result.get("others_cpu_share")
        others = f"; other processes used {share * 100:.0f}% of the CPU meanwhile" if share is not None else ""
        lines.append(f"Section time {result.get('seconds', 0):.0f} s; load average before/after "
                     f"{load.get('before')} / {load.get('after')}{others}.")
        lines.append("")
        lines.append("| figure | value | baseline | ratio | target | note |")
        lines.append("|---|---:|---|---:|---|---|")
        for r in result.get("rows", []):
            baseline = f"{r['baseline']}: {fmt(r['baseline_value'], r['unit'])}" if r.get("baseline") else ""
            lines.append(f"| {_plain(r['name'].strip())} | {fmt(r['value'], r['unit'])} | {_plain(baseline)} | "
                         f"{ratio_text(r)} | {_plain(target_text(r))} | {_plain(r.get('note') or '')} |")
        lines.append("")
        for note in result.get("notes", []) + result.get("recommendations", []):
            lines.append(f"- {_plain(note)}")
        lines.append("")
    targets = report.get("targets", [])
    if targets:
        lines.append(f"Targets: {sum(1 for t in targets if t['met'])} of {len(targets)} met.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import json
    import sys
    from pathlib import Path

    # python -m benchmarks.perf.table benchmarks/results/perf.json  -> the Markdown tables of a saved run
    print(to_markdown(json.loads(Path(sys.argv[1]).read_text())), end="")
