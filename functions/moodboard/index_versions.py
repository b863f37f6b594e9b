"""Published index versions: the list, promotion of any of them to CURRENT (rollback), retention.

Every version under indexes/<version>/ stays immutable; what changes is CURRENT, always through
ArtifactStore.move_current's conditional write, so two admins promoting at once give exactly one
winner and one PublishConflict (409). A version built with another model fingerprint than the one
served is refused (IndexModelMismatch, 409) and CURRENT is not touched.

Each publish also writes a small card, index-cards/<version>.json (created time, catalog key,
product count, products per category, model source and fingerprint, who published), so the list
costs one small GET per version instead of reading products.jsonl. Versions published before cards
existed are listed from their manifest (categories unknown).

Every publisher publishes through `publish_version` (the single-process loader, the sharded load's
reduce step, `moodboard serve`): upload the version, write its card, move CURRENT, apply retention.

Retention (`prune`): keep the newest `keep` versions and every version younger than `keep_days`;
never CURRENT nor the version it replaced (CURRENT's `previous`), re-read before each deletion.
A version is deleted manifest first, so a half-deleted one reads as incomplete, never as valid.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from moodboard.artifacts import INDEX_PREFIX, ArtifactStore, Pointer, check_version, s3_errors
from moodboard.errors import (
    BundleError,
    IndexModelMismatch,
    MoodboardError,
    NotFound,
    PublishConflict,
    StoreError,
    UnknownIndexVersion,
)
from moodboard.index.manifest import PRODUCTS_FILE, IndexManifest, read_manifest
from moodboard.integrity import MANIFEST_FILE

if TYPE_CHECKING:
    from moodboard.settings import Settings

logger = logging.getLogger(__name__)

CARD_PREFIX = "index-cards/"
SHORT_FINGERPRINT = 6


class VersionCard(BaseModel):
    """What the team sees of one published index version."""

    version: str
    created: str
    model_fingerprint: str
    model_precision: str | None = None
    model_source: str | None = None
    count: int
    categories: dict[str, int] | None = None
    catalog_key: str | None = None
    catalog_sha256: str | None = None
    published_by: str | None = None


class IndexVersion(VersionCard):
    """A card plus where it stands: served now, or the one CURRENT replaced."""

    current: bool = False
    previous: bool = False
    model: str = Field(description="the model as 'source @ short fingerprint'")


class VersionList(BaseModel):
    """GET /admin/indexes: newest first, and the retention rule in force."""

    current: str | None
    previous: str | None
    items: list[IndexVersion]
    retention: dict[str, Any]


def model_label(source: str | None, fingerprint: str) -> str:
    """A model named by source and short fingerprint, e.g. 'openai/clip-vit-base-patch32 @ 1a2b3c'."""
    short = fingerprint[:SHORT_FINGERPRINT]
    return f"{source} @ {short}" if source else f"model @ {short}"


def categories_of(index_dir: Path) -> dict[str, int]:
    """Products per category of a local bundle, read line by line from products.jsonl."""
    counts: Counter[str] = Counter()
    with (Path(index_dir) / PRODUCTS_FILE).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                counts[str(json.loads(line).get("category"))] += 1
    return dict(sorted(counts.items()))


class IndexVersions:
    """The published versions in one artifacts bucket."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self.client = store.client
        self.bucket = store.bucket

    # --- cards ---------------------------------------------------------------------------------

    def write_card(self, index_dir: Path, *, catalog_key: str | None = None, model_source: str | None = None,
                   published_by: str | None = None) -> VersionCard:
        """Write the card of a bundle just uploaded (best effort: a missing card only costs the list
        its categories). The upload verified the files: only the manifest is read here."""
        manifest = read_manifest(Path(index_dir))
        card = VersionCard(version=manifest.version, created=manifest.created,
                           model_fingerprint=manifest.model_fingerprint, model_precision=manifest.model_precision,
                           model_source=model_source, count=manifest.count, categories=categories_of(index_dir),
                           catalog_key=catalog_key, catalog_sha256=manifest.catalog_sha256,
                           published_by=published_by)
        with s3_errors(f"write the card of index {manifest.version}"):
            self.client.put_object(Bucket=self.bucket, Key=f"{CARD_PREFIX}{manifest.version}.json",
                                   Body=card.model_dump_json().encode(), ContentType="application/json")
        return card

    def card(self, version: str) -> VersionCard | None:
        """The card of a published version (from its manifest when it has none); None when the
        version does not exist or is incomplete (no manifest)."""
        check_version(version)
        raw = self._get(f"{CARD_PREFIX}{version}.json")
        if raw is not None:
            try:
                return VersionCard.model_validate_json(raw)
            except ValidationError:
                logger.warning("the card of index %s is unreadable; using its manifest", version)
        raw = self._get(f"{INDEX_PREFIX}{version}/{MANIFEST_FILE}")
        if raw is None:
            return None
        try:
            manifest = IndexManifest.model_validate_json(raw)
        except ValidationError as exc:
            raise BundleError(f"the manifest of index {version} is not valid") from exc
        return VersionCard(version=manifest.version, created=manifest.created,
                           model_fingerprint=manifest.model_fingerprint, model_precision=manifest.model_precision,
                           count=manifest.count, catalog_sha256=manifest.catalog_sha256)

    def _get(self, key: str) -> bytes | None:
        """The object's bytes; None when it does not exist, BundleError when S3 fails to read it."""
        try:
            with s3_errors(f"read {key}", missing=NotFound(f"no {key}")):
                return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except NotFound:
            return None
        except StoreError as exc:  # a version whose card cannot be read is left out of the list
            raise BundleError(exc.message) from exc

    # --- listing -------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every folder under indexes/ (complete or not)."""
        names = []
        with s3_errors(f"list {INDEX_PREFIX}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=INDEX_PREFIX, Delimiter="/")
            for page in pages:
                names += [p["Prefix"][len(INDEX_PREFIX):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return names

    def list(self, *, sources: dict[str, str] | None = None, keep: int | None = None,
             keep_days: float | None = None) -> VersionList:
        """Published versions, newest first, flagged current / previous. `sources` names models by
        fingerprint for versions whose card has no source."""
        pointer = self.store.current()
        items = []
        for name in self.names():
            try:
                card = self.card(name)
            except BundleError as exc:
                logger.warning("index %s left out of the list: %s", name, exc.message)
                continue
            if card is None:
                continue
            source = card.model_source or (sources or {}).get(card.model_fingerprint)
            items.append(IndexVersion(**card.model_dump(exclude={"model_source"}), model_source=source,
                                      model=model_label(source, card.model_fingerprint),
                                      current=pointer is not None and pointer.version == card.version,
                                      previous=pointer is not None and pointer.previous == card.version))
        items.sort(key=lambda v: (v.created, v.version), reverse=True)
        return VersionList(current=pointer.version if pointer else None,
                           previous=pointer.previous if pointer else None, items=items,
                           retention={"keep_versions": keep, "keep_days": keep_days,
                                      "rule": "the newest keep_versions and any younger than keep_days are kept; "
                                              "never CURRENT nor the version it replaced"})

    def get(self, version: str, *, list_url: str | None = None) -> VersionCard:
        """One published version; UnknownIndexVersion (404, with the list URL) when there is none."""
        try:
            card = self.card(version)
        except BundleError:
            card = None
        if card is None:
            raise UnknownIndexVersion(f"no published index version {version!r}; see the list at {list_url or '/admin/indexes'}",
                                      details={"version": version, "list_url": list_url or "/admin/indexes"})
        return card

    # --- promotion -----------------------------------------------------------------------------

    def promote(self, version: str, *, model_fingerprint: str | None = None, expected_version: str | None = None,
                list_url: str | None = None) -> Pointer:
        """Make `version` CURRENT (a rollback when it is older), with the conditional write.

        The version must be built with `model_fingerprint` (default: the fingerprint CURRENT has, i.e.
        the served model), else IndexModelMismatch. With `expected_version` the move only happens if
        CURRENT still is that version (what the admin saw); PublishConflict otherwise, as when another
        promotion or publish wins the race."""
        try:
            check_version(version)
        except BundleError:
            raise UnknownIndexVersion(f"no published index version {version!r}",
                                      details={"version": version, "list_url": list_url or "/admin/indexes"}) from None
        card = self.get(version, list_url=list_url)
        pointer = self.store.current()
        if expected_version is not None and (pointer is None or pointer.version != expected_version):
            raise PublishConflict(f"CURRENT is {pointer.version if pointer else 'unset'}, not {expected_version}: "
                                  "someone changed it first; reload the list",
                                  details={"current": pointer.version if pointer else None})
        want = model_fingerprint or (pointer.model_fingerprint if pointer else None)
        if want and card.model_fingerprint != want:
            raise IndexModelMismatch(
                f"index {version} was built with model {card.model_fingerprint[:12]}, but the served model is "
                f"{want[:12]}; CURRENT was not changed",
                details={"version": version, "model_fingerprint": card.model_fingerprint, "served": want})
        if pointer is not None and pointer.version == version:
            return pointer
        moved = self.store.move_current(version, card.model_fingerprint, expected=pointer)
        logger.info("index %s promoted to CURRENT (was %s)", version, pointer.version if pointer else None)
        return moved

    # --- retention -----------------------------------------------------------------------------

    def prune(self, *, keep: int, keep_days: float, now: datetime | None = None) -> list[str]:
        """Delete the versions the retention rule lets go (module docstring); returns their names."""
        now = now or datetime.now(UTC)
        listed = self.list().items  # newest first
        young = {v.version for v in listed if _age(v.created, now) < timedelta(days=keep_days)}
        keepers = {v.version for v in listed[:max(keep, 0)]} | young
        deleted = []
        for version in (v.version for v in listed if v.version not in keepers):
            pointer = self.store.current()
            if pointer is not None and version in (pointer.version, pointer.previous):
                continue
            self._delete(version)
            deleted.append(version)
        if deleted:
            logger.info("retention removed index versions %s", ", ".join(deleted))
        return deleted

    def _delete(self, version: str) -> None:
        prefix = f"{INDEX_PREFIX}{check_version(version)}/"
        with s3_errors(f"delete index {version}"):
            self.client.delete_object(Bucket=self.bucket, Key=prefix + MANIFEST_FILE)
            keys: list[str] = []
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys += [obj["Key"] for obj in page.get("Contents", [])]
            for chunk in _chunks(keys, 1000):
                self.client.delete_objects(Bucket=self.bucket,
                                           Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
            self.client.delete_object(Bucket=self.bucket, Key=f"{CARD_PREFIX}{version}.json")


def _age(created: str, now: datetime) -> timedelta:
    try:
        moment = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return timedelta(0)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return now - moment


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def publish_version(store: ArtifactStore, bundle: Path, *, base: Pointer | None, settings: Settings,
                    catalog_key: str | None = None, model_source: str | None = None) -> Pointer:
    """Publish an index bundle, the one way every publisher does it: upload it as an immutable
    version (one uploaded before by an earlier try of this publish is kept: a version name is never
    reused for another bundle), write its card (catalog key, product types; best effort: a missing
    card only costs the list its categories), move CURRENT from `base` with the conditional write
    (PublishConflict when it moved meanwhile, CURRENT untouched), then apply the retention rule
    (best effort). Returns the new pointer."""
    bundle = Path(bundle)
    try:
        manifest = store.upload_version(bundle)
    except PublishConflict:
        manifest = read_manifest(bundle)
        logger.info("index %s was uploaded before; moving CURRENT to it", manifest.version)
    try:
        IndexVersions(store).write_card(bundle, catalog_key=catalog_key, model_source=model_source)
    except MoodboardError as exc:
        logger.warning("index %s: no card written (%s)", manifest.version, exc.message)
    pointer = store.move_current(manifest.version, manifest.model_fingerprint, expected=base)
    apply_retention(store, settings)
    return pointer


def apply_retention(store: ArtifactStore, settings: Settings) -> list[str]:
    """Prune old versions after a publish (IndexVersions.prune with the settings' rule), logging
    what it deleted; a failure is logged and never fails the load that just published."""
    try:
        deleted = IndexVersions(store).prune(keep=settings.index_keep_versions, keep_days=settings.index_keep_days)
    except Exception:  # retention is housekeeping: the publish already succeeded
        logger.warning("retention of index versions failed; nothing more was deleted", exc_info=True)
        return []
    if not deleted:
        logger.info("retention: no index version to delete (keep %d, %g days)", settings.index_keep_versions,
                    settings.index_keep_days)
    return deleted
