"""Named team members for the local stack: one bearer token per person, kept in the data folder.

In AWS a team member is a Cognito user and API Gateway's authorizer proves who calls; locally
`moodboard team add NAME [--admin]` creates a member and prints their token once. The file (team.json
in the data folder, mode 0600) holds each member's name, role, when they were added and the sha256 of
their token, never the token itself, so reading the file does not let anyone sign in as a member.
A member's role is "member" (rates, works rounds, reads the dashboards) or "admin" (also promotes
index versions and loads catalogs: moodboard.auth); an entry without a role, as written before roles
existed, is a plain member, the safe default.
Tokens are compared in constant time. There is no shared or anonymous team token: a rating made
with a member's token is that member's, and nothing in a request body can name another rater.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from moodboard.dynamo import utc_now
from moodboard.errors import Conflict, NotFound

logger = logging.getLogger(__name__)

TEAM_FILE = "team.json"
TOKEN_BYTES = 24
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")
RESERVED = frozenset({"admin", "anonymous"})
Role = Literal["member", "admin"]
MEMBER: Final = "member"
ADMIN: Final = "admin"
ROLES: tuple[Role, ...] = (MEMBER, ADMIN)
_lock = threading.Lock()


@dataclass(frozen=True)
class Member:
    """A team member as listed (no token)."""

    name: str
    created_at: str
    role: Role = MEMBER


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    """A member name: 1-64 letters, digits, space, . _ @ -, starting with a letter or digit; not
    'admin' or 'anonymous'."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or name.lower() in RESERVED \
            or name.lower().startswith("shopper:"):
        raise Conflict(f"{name!r} cannot be a member name (1-64 letters, digits, space, . _ @ -; "
                       "not admin, anonymous or shopper:...)")
    return name


class LocalTeam:
    """The members in `<data folder>/team.json`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        members = data.get("members") if isinstance(data, dict) else None
        return members if isinstance(members, dict) else {}

    def _write(self, members: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".team-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"members": members}, fh, indent=1, sort_keys=True)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def members(self) -> list[Member]:
        """Every member, by name."""
        return [_member(name, entry) for name, entry in sorted(self._read().items())]

    def add(self, name: str, *, rotate: bool = False, admin: bool = False) -> str:
        """Add a member (an admin with `admin`) and return their new token (shown once). Conflict when
        the name exists, unless `rotate` (a new token replaces the old one; the role stays, or becomes
        admin with `admin`)."""
        check_name(name)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with _lock:
            members = self._read()
            if name in members and not rotate:
                raise Conflict(f"team member {name!r} already exists (use --rotate for a new token)")
            before = members.get(name, {})
            role: Role = ADMIN if admin else _member(name, before).role
            members[name] = {"token_sha256": _digest(token), "created_at": before.get("created_at") or utc_now(),
                             "role": role}
            self._write(members)
        logger.info("team member %s (%s) %s", name, role, "given a new token" if rotate else "added")
        return token

    def set_role(self, name: str, role: Role) -> Member:
        """Make a member an admin or a plain member (their token stays); NotFound when there is none."""
        if role not in ROLES:
            raise Conflict(f"{role!r} is not a role (one of {', '.join(ROLES)})")
        with _lock:
            members = self._read()
            if name not in members:
                raise NotFound(_unknown(name))
            members[name] = {**members[name], "role": role}
            self._write(members)
        logger.info("team member %s is now a %s", name, role)
        return _member(name, members[name])

    def remove(self, name: str) -> None:
        """Remove a member (their ratings stay); NotFound when there is none."""
        with _lock:
            members = self._read()
            if name not in members:
                raise NotFound(_unknown(name))
            del members[name]
            self._write(members)

    def who(self, token: str) -> str | None:
        """The name of the member whose token this is, or None."""
        member = self.member(token)
        return member.name if member else None

    def member(self, token: str) -> Member | None:
        """The member (with their role) whose token this is, or None."""
        if not token:
            return None
        digest = _digest(token)
        found = None
        for name, entry in self._read().items():
            if hmac.compare_digest(entry.get("token_sha256", ""), digest):
                found = _member(name, entry)
        return found


def _unknown(name: str) -> str:
    # Members are managed from the CLI only (no HTTP route lists them), so point there.
    return f"no team member {name!r} (see `moodboard team list`)"


def _member(name: str, entry: dict[str, str]) -> Member:
    # No role (a file written before roles) or an unknown one: a plain member, never an admin.
    role: Role = ADMIN if entry.get("role") == ADMIN else MEMBER
    return Member(name, entry.get("created_at", ""), role)
