"""This process's memory, from /proc (standard library only, so child processes can import it
without pulling in the benchmark's tooling)."""

from __future__ import annotations

import os


def rss_bytes() -> int:
    """Current resident set size (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def peak_rss_bytes() -> int:
    """Peak resident set size of this process: VmHWM, not ru_maxrss, because Linux carries a
    parent's ru_maxrss into a child across fork and exec (a child of a big parent reports the
    parent's peak). ru_maxrss only where /proc is missing."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


class OthersCpu:
    """How much of the machine's CPU other processes used while the block ran (0..1): the machine's
    busy time minus this process's and its waited-for children's. The load average cannot tell
    this, since it counts the benchmark's own threads."""

    def __init__(self) -> None:
        self.share: float | None = None

    def __enter__(self) -> OthersCpu:
        try:
            self._ticks = _cpu_ticks()
        except (OSError, ValueError, IndexError):
            self._ticks = None
        self._mine = sum(os.times()[:4])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ticks is None:
            return
        try:
            busy, total = _cpu_ticks()
        except (OSError, ValueError, IndexError):
            return
        hz = os.sysconf("SC_CLK_TCK")
        mine = (sum(os.times()[:4]) - self._mine) * hz
        elapsed = total - self._ticks[1]
        if elapsed > 0:
            self.share = max(0.0, min(1.0, (busy - self._ticks[0] - mine) / elapsed))
