"""The CLI's one output helper: rich consoles for results (stdout), messages and progress (stderr)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(message: str) -> None:
    """Print a one-line error for people on stderr."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)


def print_note(message: str) -> None:
    """Print a one-line notice (not an error) on stderr, so stdout stays machine-readable."""
    err_console.print(f"[yellow]note:[/] {escape(message)}", markup=True, soft_wrap=True)


@contextmanager
def progress_bar(label: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr while the block runs, advanced by the callback it yields,
    `callback(done, total)` (the library's progress callbacks); None when not `enabled`."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err_console) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
