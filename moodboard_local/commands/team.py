"""`moodboard team add|list|remove|role NAME`: named team members of the local stack (moodboard.team).

Each member gets their own token, printed once; the data folder keeps only its sha256. The page
and the API store that member's ratings under their name. `add NAME --admin` makes an admin (may
also promote index versions and load catalogs); a plain `add` a team member; `role NAME admin|member`
changes a member's role and keeps their token.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from moodboard.settings import get_settings
from moodboard_local.console import console


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("team", help="add, list or remove the local stack's named team members",
                              description="Named team members for `moodboard serve`: one token per person.")
    p.add_argument("action", choices=["add", "list", "remove", "role"])
    p.add_argument("name", nargs="?", help="the member's name (add, remove, role)")
    p.add_argument("role", nargs="?", choices=["admin", "member"], help="role: the member's new role")
    p.add_argument("--admin", action="store_true",
                   help="add: an admin, who may also promote index versions and load catalogs")
    p.add_argument("--rotate", action="store_true", help="add: give an existing member a new token (the role stays)")
    p.add_argument("--data-dir", type=Path, default=None, help="the serve data folder (default as for serve)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moodboard.errors import ConfigError
    from moodboard_local.commands.serve import DEFAULT_DATA_DIR
    from moodboard_local.local_data import LocalData

    team = LocalData(args.data_dir or get_settings().data_dir or DEFAULT_DATA_DIR).team()
    if args.action == "list":
        for member in team.members():
            console.print(f"{member.name}  {member.role}  (added {member.created_at})", markup=False)
        return 0
    if not args.name:
        raise ConfigError(f"team {args.action} needs a NAME")
    if args.action == "remove":
        team.remove(args.name)
        console.print(f"removed {args.name} (their ratings stay)", markup=False)
        return 0
    if args.action == "role":
        if not args.role:
            raise ConfigError("team role needs NAME and a role: admin or member")
        member = team.set_role(args.name, args.role)
        console.print(f"{member.name} is now {'an admin' if member.role == 'admin' else 'a team member'}",
                      markup=False)
        return 0
    if args.role:
        raise ConfigError(f"team add takes one NAME (for an admin: team add {args.name} --admin)")
    token = team.add(args.name, rotate=args.rotate, admin=args.admin)
    member = team.member(token)
    role = "an admin" if member and member.role == "admin" else "a team member"
    console.print(f"{args.name}'s token ({role}; shown once; sign in on the team page with it): {token}",
                  markup=False)
    return 0
