"""Index versions against moto: the list, promotion (rollback) with the conditional write, the
fingerprint refusal, the race of two admins, and the retention rule."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from moodboard.artifacts import CURRENT_KEY, ArtifactStore
from moodboard.errors import IndexModelMismatch, PublishConflict, UnknownIndexVersion
from moodboard.index_versions import IndexVersions, model_label

from tests.unit.test_artifacts import BUCKET, FINGERPRINT, atomic_moto_puts, make_bundle, s3, store  # noqa: F401


def publish(store: ArtifactStore, path: Path, *, seed: int, fingerprint: str = FINGERPRINT, n: int = 6,
            catalog_key: str | None = "catalogs/spring.csv", card: bool = True) -> str:
    bundle = make_bundle(path, seed=seed, fingerprint=fingerprint, n=n)
    pointer = store.publish(bundle)
    if card:
        IndexVersions(store).write_card(bundle, catalog_key=catalog_key, model_source="openai/clip-vit-base-patch32")
    return pointer.version


def test_model_label_names_source_and_short_fingerprint() -> None:
    assert model_label("openai/clip-vit-base-patch32", "1a2b3c4d5e6f") == "openai/clip-vit-base-patch32 @ 1a2b3c"
    assert model_label(None, "1a2b3c4d5e6f") == "model @ 1a2b3c"


def test_list_shows_cards_newest_first_with_current_and_previous(store: ArtifactStore, tmp_path: Path) -> None:
    first = publish(store, tmp_path / "a", seed=1, n=6)
    second = publish(store, tmp_path / "b", seed=2, n=5, card=False)
    listing = IndexVersions(store).list(sources={FINGERPRINT: "fake/source"})
    assert listing.current == second and listing.previous == first
    by_version = {v.version: v for v in listing.items}
    assert set(by_version) == {first, second}
    one = by_version[first]
    assert (one.count, one.catalog_key, one.categories) == (6, "catalogs/spring.csv", {"dress": 3, "lamp": 3})
    assert one.model == "openai/clip-vit-base-patch32 @ " + FINGERPRINT[:6] and one.previous and not one.current
    two = by_version[second]  # no card: read from its manifest, source from `sources`
    assert (two.count, two.categories, two.model, two.current) == (5, None, "fake/source @ fake-e", True)


def test_promote_rolls_back_and_records_previous(store: ArtifactStore, s3: Any, tmp_path: Path) -> None:
    first = publish(store, tmp_path / "a", seed=1)
    second = publish(store, tmp_path / "b", seed=2)
    pointer = IndexVersions(store).promote(first, expected_version=second)
    assert pointer.version == first and pointer.previous == second
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=CURRENT_KEY)["Body"].read())
    assert (stored["version"], stored["previous"]) == (first, second)


def test_promote_unknown_version_is_404_with_the_list_url(store: ArtifactStore, tmp_path: Path) -> None:
    publish(store, tmp_path / "a", seed=1)
    with pytest.raises(UnknownIndexVersion) as caught:
        IndexVersions(store).promote("20990101T000000Z-dead", list_url="http://127.0.0.1/admin/indexes")
    assert caught.value.status_code == 404
    assert caught.value.details["list_url"] == "http://127.0.0.1/admin/indexes"
    with pytest.raises(UnknownIndexVersion):
        IndexVersions(store).promote("../CURRENT")


def test_promote_of_another_fingerprint_is_refused_and_current_untouched(store: ArtifactStore, s3: Any,
                                                                          tmp_path: Path) -> None:
    other = make_bundle(tmp_path / "other", seed=9, fingerprint="another-model-99")
    other_version = store.upload_version(other).version
    served = publish(store, tmp_path / "a", seed=1)
    before = s3.get_object(Bucket=BUCKET, Key=CURRENT_KEY)["Body"].read()
    with pytest.raises(IndexModelMismatch) as caught:
        IndexVersions(store).promote(other_version)
    assert caught.value.status_code == 409 and "another-mode" in caught.value.message
    assert s3.get_object(Bucket=BUCKET, Key=CURRENT_KEY)["Body"].read() == before
    assert store.current().version == served


def test_promote_with_a_stale_expected_version_is_a_conflict(store: ArtifactStore, tmp_path: Path) -> None:
    first = publish(store, tmp_path / "a", seed=1)
    second = publish(store, tmp_path / "b", seed=2)
    with pytest.raises(PublishConflict):
        IndexVersions(store).promote(second, expected_version=first)
    assert store.current().version == second


def test_two_admins_promoting_at_once_one_wins(store: ArtifactStore, tmp_path: Path,
                                               atomic_moto_puts: None) -> None:  # noqa: F811
    versions = [publish(store, tmp_path / f"v{i}", seed=i) for i in range(3)]
    current = versions[-1]
    barrier = threading.Barrier(2)
    outcome: dict[str, str] = {}

    def promote(version: str) -> None:
        barrier.wait()
        try:
            IndexVersions(store).promote(version, expected_version=current)
            outcome[version] = "won"
        except PublishConflict:
            outcome[version] = "409"

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions[:2]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcome.values()) == ["409", "won"]
    winner = next(v for v, o in outcome.items() if o == "won")
    assert store.current().version == winner


def test_retention_keeps_current_and_previous_and_the_newest(store: ArtifactStore, s3: Any, tmp_path: Path) -> None:
    versions = [publish(store, tmp_path / f"v{i}", seed=i) for i in range(5)]
    # roll back to the oldest: CURRENT = v0, previous = v4
    IndexVersions(store).promote(versions[0])
    later = datetime.now(UTC) + timedelta(days=400)
    # the newest by the list's order (versions made in the same second tie on `created`)
    newest = IndexVersions(store).list().items[0].version
    deleted = IndexVersions(store).prune(keep=1, keep_days=30, now=later)
    listing = IndexVersions(store).list()
    kept = {v.version for v in listing.items}
    assert kept == {versions[0], versions[4], newest}  # CURRENT, the one it replaced, the newest
    assert set(deleted) == set(versions) - kept
    for version in deleted:
        assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"indexes/{version}/").get("KeyCount", 0) == 0


def test_retention_keeps_young_versions(store: ArtifactStore, tmp_path: Path) -> None:
    versions = [publish(store, tmp_path / f"v{i}", seed=i) for i in range(4)]
    assert IndexVersions(store).prune(keep=1, keep_days=30) == []
    assert {v.version for v in IndexVersions(store).list().items} == set(versions)


def test_cli_index_list_and_rollback(store: ArtifactStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from moodboard_local.cli import main

    first = publish(store, tmp_path / "a", seed=1)
    second = publish(store, tmp_path / "b", seed=2)
    assert main(["index", "list", "--bucket", BUCKET]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(lines) == {first, second} and lines[second].endswith("current")
    assert lines[first].endswith("previous") and "6 products  2 product types  openai/clip-vit-base-patch32 @ " in lines[first]

    assert main(["index", "rollback", first, "--bucket", BUCKET, "--expected", first]) == 2  # CURRENT moved: 409
    assert "not " + first in capsys.readouterr().err.replace("\n", " ")
    assert store.current().version == second
    assert main(["index", "rollback", "no-such-version", "--bucket", BUCKET]) == 2
    error = capsys.readouterr().err
    assert "no-such-version" in error and len(error.strip().splitlines()) == 1
    assert main(["index", "rollback", first, "--bucket", BUCKET]) == 0
    assert f"CURRENT is now {first} (it replaced {second})" in capsys.readouterr().out
    assert store.current().version == first
