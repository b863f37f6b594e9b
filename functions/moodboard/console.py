"""The CLI's one output helper: rich consoles for results (stdout) and messages (stderr)."""

from __future__ import annotations

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
