"""The local stack's embedded moto server (127.0.0.1) behaves like DynamoDB and S3 under concurrency."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moodboard import aws
from moodboard.artifacts import ArtifactStore, Pointer
from moodboard.errors import PublishConflict
from moodboard.evaluations import EvaluationStore
from moodboard.history import HistoryStore, make_history_record
from moodboard.settings import Settings
from moodboard_local.local_stack import MOTO_CREDENTIALS, LocalAWS, ensure_resources, start_local_aws

WRITERS = 16
ROUNDS = 5
# moto's unlocked read-change-write lasts microseconds; switching threads that often makes two
# requests overlap in it on most rounds (measured on the old server: 8 rounds of 10 went wrong).
SWITCH_INTERVAL = 1e-5


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalAWS, Settings]]:
    for name, value in MOTO_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    settings = Settings(artifacts_bucket="moodboard-local-test", cache_dir=tmp_path / "cache")
    stack = start_local_aws(settings, "moto")
    try:
        assert stack.kind == "moto" and stack.endpoint_url.startswith("http://127.0.0.1:")
        yield stack, settings.model_copy(update={"aws_endpoint_url": stack.endpoint_url})
    finally:
        stack.stop()


@pytest.fixture
def fast_thread_switching() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    yield
    sys.setswitchinterval(previous)


def all_at_once(count: int, work: Any) -> list[Any]:
    """Run work(i) in `count` threads released together; returns the results (or exceptions) in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - returned to the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_identical_ratings_create_once_and_count_every_revision(
        local: tuple[LocalAWS, Settings], fast_thread_switching: None) -> None:
    _, settings = local
    dynamodb = aws.client("dynamodb", settings)
    ensure_resources(settings, aws.client("s3", settings), dynamodb)
    history = HistoryStore(dynamodb, settings.history_table)
    evaluations = EvaluationStore(dynamodb, settings.evaluations_table)

    for round_ in range(ROUNDS):
        search = history.put(make_history_record(kind="image", category="dress", params={}, result_ids=["p0", "p1"],
                                                 model_fingerprint="fp", index_version="v1", ttl_days=1))

        answers = all_at_once(WRITERS, lambda _: evaluations.rate(search, product_id="p1", rater="ann", rating=1))

        assert not [a for a in answers if isinstance(a, Exception)], answers
        created = [was_created for _, was_created in answers]
        assert created.count(True) == 1, f"round {round_}: {created.count(True)} answers said created"
        assert sorted(record.revisions for record, _ in answers) == list(range(1, WRITERS + 1))
        assert evaluations.get(search.search_id, "p1", "ann").revisions == WRITERS


def test_concurrent_publishes_through_the_local_stack_have_one_winner(
        local: tuple[LocalAWS, Settings], fast_thread_switching: None, tmp_path: Path) -> None:
    _, settings = local
    s3 = aws.client("s3", settings)
    ensure_resources(settings, s3, aws.client("dynamodb", settings))
    store = ArtifactStore(settings.artifacts_bucket, s3)

    for round_ in range(ROUNDS):
        base = store.current()
        outcomes = all_at_once(4, lambda i: store.move_current(f"v{round_}-{i}", "fp", expected=base))

        winners = [o for o in outcomes if isinstance(o, Pointer)]
        assert len(winners) == 1, outcomes
        assert all(isinstance(o, PublishConflict) for o in outcomes if o not in winners), outcomes
        assert store.current().version == winners[0].version
