"""Local data that lasts: `moodboard serve`'s data folder, found again on the next start.

    <data folder>/               default .moodboard-data/ in the project (MOODBOARD_DATA_DIR, --data-dir)
      admin-token                the local admin token (0600), made once: stable between starts
      team.json                  named team members, token digests only (moodboard.team)
      moto-state/s3.pickle       the embedded moto server's S3 (index versions, cards, catalogs, CURRENT)
      moto-state/dynamodb.pickle its DynamoDB (history, ratings, rounds, search URLs, jobs)
      cache/                     Settings.cache_dir: downloaded index versions, load work folders
      compared-indexes/          indexes of the models served with --compare-model (by catalog and model)

Why moto's state saved and restored, rather than a local backend behind the store interfaces: the
stores talk boto3 (low-level clients, conditional writes, scans with filters, paginators); a second
implementation of each would be a second code path to keep equal to DynamoDB and S3, which is
exactly what the local stack exists to avoid (DESIGN.md, "Local mode"). moto's backends are plain
Python objects that pickle (measured here: 5,400 S3 objects of 6 KB, 35 MB, dumped in 0.23 s and
loaded in 0.5 s), so the same moto server keeps serving the same code path and merely remembers.
The start-up cost that was there (35-47 s) was uploading the index's thumbnails into an empty moto
S3 on every start; with the state restored CURRENT already is that version and nothing is uploaded.

Saving: every request that changes something marks its service dirty (the server applies those
one at a time); a background thread pickles the dirty services every AUTOSAVE_SECONDS while holding
the same lock, so a pickle never sees half a request, and writes each atomically (temp file, fsync,
rename). Stopping the server saves once more. A state file this moto cannot read is moved aside
(`<name>.unreadable-<time>`), never deleted, and the server starts empty. The pickles are the
user's own files in their own data folder; they are not a format to accept from anyone else.
"""

from __future__ import annotations

import logging
import os
import pickle
import secrets
import tempfile
import threading
import time
from pathlib import Path

from moodboard.team import TEAM_FILE, LocalTeam

logger = logging.getLogger(__name__)

ADMIN_TOKEN_FILE = "admin-token"
STATE_DIR = "moto-state"
CACHE_DIR = "cache"
COMPARED_INDEXES_DIR = "compared-indexes"
SERVICES = ("s3", "dynamodb")
AUTOSAVE_SECONDS = 2.0


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalData:
    """One data folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def cache_dir(self) -> Path:
        return self.root / CACHE_DIR

    @property
    def compared_indexes_dir(self) -> Path:
        return self.root / COMPARED_INDEXES_DIR

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def team(self) -> LocalTeam:
        """The named team members of this folder."""
        return LocalTeam(self.root / TEAM_FILE)

    def admin_token(self) -> tuple[str, bool]:
        """The local admin token and whether it was just made (made once, then read back)."""
        path = self.root / ADMIN_TOKEN_FILE
        try:
            token = path.read_text(encoding="utf-8").strip()
            if token:
                return token, False
        except FileNotFoundError:
            pass
        token = secrets.token_urlsafe(24)
        _write_private(path, token.encode())
        return token, True


class MotoState:
    """moto's S3 and DynamoDB backends, saved to `folder` and restored from it."""

    def __init__(self, folder: Path, lock: threading.Lock, *, interval: float = AUTOSAVE_SECONDS) -> None:
        self.folder = Path(folder)
        self.lock = lock
        self.interval = interval
        self._dirty: set[str] = set()
        self._dirty_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def restore(self) -> list[str]:
        """Install the saved backends in moto (before the server serves); returns those restored."""
        from moto.backends import get_backend

        restored = []
        for service in SERVICES:
            path = self.folder / f"{service}.pickle"
            if not path.is_file():
                continue
            try:
                with path.open("rb") as fh:
                    accounts = pickle.load(fh)  # noqa: S301 - the user's own data folder (module docstring)
                if not isinstance(accounts, dict):
                    raise TypeError(f"expected a dict of accounts, found {type(accounts).__name__}")
            except Exception as exc:  # noqa: BLE001 - any unreadable state is set aside, never lost
                aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
                path.rename(aside)
                logger.warning("the saved %s state could not be read (%s); moved to %s, starting empty",
                               service, type(exc).__name__, aside)
                continue
            backend = get_backend(service)
            backend.clear()
            backend.update(accounts)
            restored.append(service)
        return restored

    def mark_dirty(self, service: str) -> None:
        """A request changed `service`; it is saved at the next autosave."""
        with self._dirty_lock:
            self._dirty.add(service)

    def save(self, *, every: bool = False) -> list[str]:
        """Pickle the dirty services (all of them with `every`), holding the request lock."""
        from moto.backends import get_backend

        with self._dirty_lock:
            services = list(SERVICES) if every else sorted(self._dirty)
            self._dirty.clear()
        saved = []
        for service in services:
            with self.lock:
                blob = pickle.dumps(dict(get_backend(service)), protocol=pickle.HIGHEST_PROTOCOL)
            _write_private(self.folder / f"{service}.pickle", blob)
            saved.append(service)
        return saved

    def start(self) -> None:
        """Autosave in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="moto-state-autosave", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.save()
            except Exception:  # noqa: BLE001 - keep saving; the next round tries again
                logger.exception("saving the local data failed; trying again in %.0f s", self.interval)

    def stop(self) -> None:
        """Stop autosaving and save what is dirty."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.save()


def service_of(environ: dict[str, object]) -> str | None:
    """Which persisted service a WSGI request is for (DynamoDB by its target header, else S3)."""
    if str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
        return "dynamodb"
    return "s3"


def changes_state(environ: dict[str, object]) -> bool:
    """Whether a request may change stored state (DynamoDB writes are POSTs like its reads: all count)."""
    if str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
        target = str(environ.get("HTTP_X_AMZ_TARGET", "")).split(".")[-1]
        return not target.startswith(("Get", "Query", "Scan", "Describe", "List", "BatchGet"))
    return environ.get("REQUEST_METHOD") not in ("GET", "HEAD", "OPTIONS")
