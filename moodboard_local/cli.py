"""The `moodboard` console script: one parser, one subcommand module per command.

Every `MoodboardError` is turned into a one-line message and exit code 2 here, once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from moodboard import __version__
from moodboard.errors import MoodboardError
from moodboard_local.console import print_error

COMMAND_MODULES = ["export_model", "train", "load", "search", "serve", "eval", "team", "index"]
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """Build the parser from every command module."""
    parser = argparse.ArgumentParser(prog="moodboard", description="Vibe search for products.")
    parser.add_argument("--version", action="version", version=f"moodboard {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"moodboard_local.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except MoodboardError as exc:
        print_error(exc.message)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
