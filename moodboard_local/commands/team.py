"""`moodboard team add|list|remove NAME`: named team members of the local stack (moodboard.team).

Each member gets their own token, printed once; the data folder keeps only its sha256. The page
and the API store that member's ratings under their name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from moodboard.settings import get_settings
from moodboard_local.console import console


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("team", help="add, list or remove the local stack's named team members",
                              description="Named team members for `moodboard serve`: one token per person.")
    p.add_argument("action", choices=["add", "list", "remove"])
    p.add_argument("name", nargs="?", help="the member's name (add, remove)")
    p.add_argument("--rotate", action="store_true", help="add: give an existing member a new token")
    p.add_argument("--data-dir", type=Path, default=None, help="the serve data folder (default as for serve)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moodboard.errors import ConfigError
    from moodboard_local.commands.serve import DEFAULT_DATA_DIR
    from moodboard_local.local_data import LocalData

    team = LocalData(args.data_dir or get_settings().data_dir or DEFAULT_DATA_DIR).team()
    if args.action == "list":
        for member in team.members():
            console.print(f"{member.name}  (added {member.created_at})", markup=False)
        return 0
    if not args.name:
        raise ConfigError(f"team {args.action} needs a NAME")
    if args.action == "remove":
        team.remove(args.name)
        console.print(f"removed {args.name} (their ratings stay)", markup=False)
        return 0
    token = team.add(args.name, rotate=args.rotate)
    console.print(f"{args.name}'s token (shown once; sign in on the team page with it): {token}", markup=False)
    return 0
