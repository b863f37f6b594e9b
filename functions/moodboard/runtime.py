"""Per-container state of the search and loader Lambdas: the embedder and the current index.

Both are heavy and built lazily, once per container (style rule 4). The index follows the CURRENT
pointer in the artifacts bucket: downloaded to Settings.cache_dir on first use, the pointer
re-checked at most once per Settings.index_refresh_seconds, and a new version swapped in only when
it downloads completely, verifies (sha256) and was built with the loaded model's fingerprint.
Anything else leaves the old index serving and logs a warning; requests in flight keep the index
object they started with, so a swap never changes an index under a running search. A version that is
bad in itself (no manifest, a sha256 or fingerprint mismatch) is refused for good; one that failed
for a passing reason (S3 throttling, a 5xx, a dropped connection, a timeout) is tried again on a
later refresh, after a backoff that doubles from RETRY_FIRST_SECONDS up to RETRY_MAX_SECONDS.

Models compared with the default one (Settings.compare_models, `moodboard serve --compare-model`)
are served from `Runtime.served_models()`: each has its own embedder and its own local index bundle,
built with it (moodboard.served_models).
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moodboard.artifacts import ArtifactStore, Pointer, download_model
from moodboard.errors import BundleError, ConfigError, IndexUnavailable, MoodboardError
from moodboard.settings import Settings

if TYPE_CHECKING:
    from moodboard.embedder import EmbedderProtocol
    from moodboard.history import HistoryStore
    from moodboard.index import ProductIndex
    from moodboard.served_models import ServedModels

logger = logging.getLogger(__name__)

INDEX_CACHE = "indexes"
KEEP_VERSIONS = 2
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 300.0


def open_index(path: Path, fingerprint: str, *, verify: bool = True) -> ProductIndex:
    """Load the index bundle at `path` for a model with this fingerprint, checking its files' sha256
    unless the caller has just done so (`verify=False` after a verified download)."""
    from moodboard.index import ProductIndex

    return ProductIndex.open(path, expected_fingerprint=fingerprint, verify=verify)


@dataclass(frozen=True)
class _Retry:
    """A version that failed for a passing reason: how often, when to try again, and why."""

    attempts: int
    at: float
    reason: str

    def describe(self, version: str, now: float) -> str:
        wait = math.ceil(max(0.0, self.at - now))
        return f"index {version} could not be loaded ({self.reason}); trying again in {wait} s"


class CurrentIndex:
    """The index this container serves, following indexes/CURRENT on S3 (or one local bundle).

    `get()` never blocks on a refresh while an index is loaded (one thread checks, the others keep
    serving), and never raises once an index has been loaded.
    """

    def __init__(self, *, fingerprint: str, store: ArtifactStore | None = None, local_dir: Path | None = None,
                 cache_dir: Path = Path("/tmp/moodboard"), refresh_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if (store is None) == (local_dir is None):
            raise ConfigError("serve an index from either a local bundle or the artifacts bucket, not both")
        self.fingerprint = fingerprint
        self.store = store
        self.local_dir = Path(local_dir) if local_dir is not None else None
        self.cache_dir = Path(cache_dir) / INDEX_CACHE
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._loaded: ProductIndex | None = None
        self._checked_at: float | None = None
        self._refused: dict[str, str] = {}
        self._postponed: dict[str, _Retry] = {}
        self._problem: str | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> ProductIndex | None:
        """The index currently served, if any."""
        return self._loaded

    @property
    def refused(self) -> dict[str, str]:
        """Versions that were refused, with the reason (kept so they are not downloaded again)."""
        return dict(self._refused)

    @property
    def postponed(self) -> dict[str, str]:
        """Versions that failed to load for a passing reason and will be tried again, with the reason."""
        return {version: retry.reason for version, retry in self._postponed.items()}

    def get(self) -> ProductIndex:
        """The index to serve now, loading it first or refreshing it when the interval has passed."""
        loaded = self._loaded
        if loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._refresh()
                if self._loaded is None:
                    raise IndexUnavailable(f"no index to serve: {self._problem or 'nothing has been published yet'}")
                return self._loaded
        if self._due() and self._lock.acquire(blocking=False):
            try:
                if self._due():
                    self._refresh()
            finally:
                self._lock.release()
        return self._loaded or loaded

    def _due(self) -> bool:
        return self._checked_at is None or self._clock() - self._checked_at >= self.refresh_seconds

    def _refresh(self) -> None:
        self._checked_at = self._clock()
        if self.local_dir is not None:
            if self._loaded is None:
                self._loaded = open_index(self.local_dir, self.fingerprint)
            return
        assert self.store is not None
        try:
            pointer = self.store.current()
        except MoodboardError as exc:
            self._keep(f"cannot read the CURRENT pointer: {exc.message}")
            return
        if pointer is None:
            self._keep("nothing has been published yet")
            return
        if self._loaded is not None and pointer.version == self._loaded.version:
            return
        if pointer.version in self._refused:
            self._problem = self._refused[pointer.version]
            return
        retry = self._postponed.get(pointer.version)
        if retry is not None and self._checked_at < retry.at:
            self._problem = retry.describe(pointer.version, self._checked_at)
            return
        self._swap_to(pointer)

    def _swap_to(self, pointer: Pointer) -> None:
        assert self.store is not None
        if pointer.model_fingerprint != self.fingerprint:
            self._refuse(pointer.version, f"it was built with model {pointer.model_fingerprint}, "
                                          f"this container runs {self.fingerprint}")
            return
        try:
            path = self.store.download(pointer.version, self.cache_dir)  # verified against its sha256
            fresh = open_index(path, self.fingerprint, verify=False)
        except BundleError as exc:  # the version itself is bad: never download it again
            self._refuse(pointer.version, exc.message)
            return
        except MoodboardError as exc:  # StoreError: S3 throttled, failed or timed out
            self._postpone(pointer.version, exc.message)
            return
        except OSError as exc:  # /tmp is full
            self._postpone(pointer.version, f"{type(exc).__name__}: {exc}")
            return
        self._postponed.clear()
        self._problem = None
        previous = self._loaded
        self._loaded = fresh
        logger.info("serving index %s (%d products)%s", fresh.version, len(fresh),
                    f", replacing {previous.version}" if previous else "")
        self._prune(keep={fresh.version, previous.version if previous else fresh.version})

    def _refuse(self, version: str, reason: str) -> None:
        self._refused[version] = reason
        self._postponed.pop(version, None)
        self._problem = reason
        served = self._loaded.version if self._loaded else "nothing"
        logger.warning("refusing index %s: %s; still serving %s", version, reason, served)

    def _postpone(self, version: str, reason: str) -> None:
        """Keep serving what is loaded and try `version` again after a backoff (only the newest
        CURRENT version is tracked: an older one that failed is of no interest any more)."""
        previous = self._postponed.get(version)
        attempts = previous.attempts + 1 if previous else 1
        delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (attempts - 1))
        now = self._clock()
        self._postponed = {version: _Retry(attempts=attempts, at=now + delay, reason=reason)}
        self._problem = self._postponed[version].describe(version, now)
        served = self._loaded.version if self._loaded else "nothing"
        logger.warning("index %s not loaded (attempt %d): %s; still serving %s, trying again in %.0f s",
                       version, attempts, reason, served, delay)

    def _keep(self, reason: str) -> None:
        self._problem = reason
        if self._loaded is not None:
            logger.warning("index refresh skipped (%s); still serving %s", reason, self._loaded.version)
        else:
            logger.warning("no index loaded: %s", reason)

    def _prune(self, keep: set[str]) -> None:
        """Delete downloaded versions other than the served and the previous one (/tmp is small)."""
        if not self.cache_dir.is_dir():
            return
        for child in self.cache_dir.iterdir():
            if child.is_dir() and child.name not in keep and not child.name.startswith("."):
                shutil.rmtree(child, ignore_errors=True)


class Runtime:
    """The lazily built singletons of one container, from one Settings object."""

    def __init__(self, settings: Settings, *, s3: Any | None = None, dynamodb: Any | None = None,
                 embedder: EmbedderProtocol | None = None,
                 load_embedder: Callable[[Path], EmbedderProtocol] | None = None) -> None:
        self.settings = settings
        self._s3 = s3
        self._dynamodb = dynamodb
        self._embedder = embedder
        self._load_embedder = load_embedder or self._onnx_embedder
        self._index: CurrentIndex | None = None
        self._served: ServedModels | None = None
        self._compared_embedders: dict[Path, EmbedderProtocol] = {}
        self._history: HistoryStore | None = None
        self._model_lock = threading.Lock()
        self._served_lock = threading.Lock()
        self._index_lock = threading.Lock()

    @property
    def s3(self) -> Any:
        """The boto3 S3 client (pointed at Settings.aws_endpoint_url when set)."""
        if self._s3 is None:
            from moodboard import aws

            self._s3 = aws.client("s3", self.settings)
        return self._s3

    @property
    def dynamodb(self) -> Any:
        """The boto3 DynamoDB client."""
        if self._dynamodb is None:
            from moodboard import aws

            self._dynamodb = aws.client("dynamodb", self.settings)
        return self._dynamodb

    def artifact_store(self) -> ArtifactStore:
        """The artifacts bucket (ConfigError when none is configured)."""
        if not self.settings.artifacts_bucket:
            raise ConfigError("no artifacts bucket configured (MOODBOARD_ARTIFACTS_BUCKET)")
        return ArtifactStore(self.settings.artifacts_bucket, self.s3)

    def model_dir(self) -> Path:
        """The model bundle folder: Settings.model_dir, else Settings.model_s3_uri downloaded once."""
        s = self.settings
        if s.model_dir:
            return Path(s.model_dir)
        if s.model_s3_uri:
            return download_model(s.model_s3_uri, self.s3, s.cache_dir)
        raise ConfigError("no model bundle configured (MOODBOARD_MODEL_DIR or MOODBOARD_MODEL_S3_URI)")

    def embedder(self) -> EmbedderProtocol:
        """The embedder, loaded on first use (onnxruntime is imported only then)."""
        if self._embedder is None:
            with self._model_lock:
                if self._embedder is None:
                    self._embedder = self._load_embedder(self.model_dir())
        return self._embedder

    def _onnx_embedder(self, model_dir: Path) -> EmbedderProtocol:
        from moodboard.embedder import Embedder

        return Embedder.load(model_dir, precision=self.settings.precision, threads=self.settings.intra_op_threads,
                             batch_size=self.settings.embed_batch_size)

    def compared_embedder(self, model_dir: Path) -> EmbedderProtocol:
        """The embedder of a bundle served for comparison, loaded once (`moodboard serve` builds its
        index with it before serving)."""
        key = Path(model_dir).resolve()
        with self._served_lock:
            if key not in self._compared_embedders:
                self._compared_embedders[key] = self._load_embedder(Path(model_dir))
            return self._compared_embedders[key]

    def served_models(self) -> ServedModels:
        """The models served next to the default one (Settings.compare_models), each with its own
        index from its local bundle; loaded on first use, once. Empty, and nothing loaded, when none
        is configured (AWS). ConfigError when one is the default model itself."""
        if self._served is None:
            compared = self._load_compared()
            with self._served_lock:
                if self._served is None:
                    self._served = compared
        return self._served

    def _load_compared(self) -> ServedModels:
        from moodboard.served_models import ComparedModel, ServedModels

        compared = []
        for bundle in self.settings.compare_models:
            embedder = self.compared_embedder(Path(bundle.model_dir))
            compared.append(ComparedModel(embedder=embedder, index=CurrentIndex(
                fingerprint=embedder.fingerprint, local_dir=Path(bundle.index_dir), cache_dir=self.settings.cache_dir)))
        if compared and any(model.fingerprint == self.embedder().fingerprint for model in compared):
            raise ConfigError(f"model {self.embedder().fingerprint} is the default model: "
                              "it cannot also be served for comparison")
        return ServedModels(compared)

    def current_index(self, fingerprint: str | None = None) -> CurrentIndex:
        """The index holder: a local bundle (Settings.index_dir) or the bucket's CURRENT version, for
        indexes built with the model of `fingerprint` (default: the loaded embedder's)."""
        if self._index is None:
            fingerprint = fingerprint or self.embedder().fingerprint
            with self._index_lock:
                if self._index is None:
                    s = self.settings
                    if s.index_dir:
                        self._index = CurrentIndex(fingerprint=fingerprint, local_dir=Path(s.index_dir),
                                                   cache_dir=s.cache_dir)
                    else:
                        self._index = CurrentIndex(fingerprint=fingerprint, store=self.artifact_store(),
                                                   cache_dir=s.cache_dir, refresh_seconds=s.index_refresh_seconds)
        return self._index

    def preload(self) -> None:
        """Load the embedder and the current index now, side by side, instead of on first use.

        For the search Lambda's init phase (Settings.preload): the model's fingerprint is read from
        its manifest first (milliseconds), so the index, which must match it, loads in a second
        thread while the onnxruntime sessions are built; hashing, file reads and session building
        release the GIL. Raises what the two loads raise (BundleError, IndexUnavailable ...).
        """
        from concurrent.futures import ThreadPoolExecutor

        from moodboard.model_bundle import load_manifest

        fingerprint = (self._embedder.fingerprint if self._embedder is not None
                       else load_manifest(self.model_dir(), verify=False).fingerprint)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="preload") as pool:
            model = pool.submit(self.embedder)
            index = pool.submit(lambda: self.current_index(fingerprint).get())
            embedder, loaded = model.result(), index.result()
        if embedder.fingerprint != fingerprint:  # the manifest changed between the two reads
            raise ConfigError(f"the model bundle changed while loading ({fingerprint} -> {embedder.fingerprint})")
        logger.info("preloaded model %s and index %s (%d products)", embedder.fingerprint, loaded.version,
                    len(loaded))

    def index(self) -> ProductIndex:
        """The index to serve for this request."""
        return self.current_index().get()

    def history(self) -> HistoryStore:
        """The search history repository."""
        if self._history is None:
            from moodboard.history import HistoryStore

            self._history = HistoryStore(client=self.dynamodb, table_name=self.settings.history_table)
        return self._history


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime(settings: Settings) -> Runtime:
    """The container's Runtime, built from `settings` on first call."""
    global _runtime
    if _runtime is None:
        with _runtime_lock:
            if _runtime is None:
                _runtime = Runtime(settings)
    return _runtime


def preload_at_init(settings: Settings) -> None:
    """With Settings.preload (the stack sets it for the search function), load the model and the
    current index now, in the Lambda's init phase. A preload that fails is logged and left to the
    first request, which then answers with the error (503 with no index yet)."""
    if not settings.preload:
        return
    try:
        get_runtime(settings).preload()
    except MoodboardError as exc:
        logger.warning("preload failed, loading on first request instead: %s", exc.message)


def set_runtime(runtime: Runtime | None) -> None:
    """Install a Runtime (moodboard serve, tests) or drop the current one (None)."""
    global _runtime
    with _runtime_lock:
        _runtime = runtime
