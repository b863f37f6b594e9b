"""The evaluations function's /tmp holds what a load's dry run may write there: the catalog archive
it downloads (moodboard.catalog_diff.MAX_DRY_RUN_BYTES) and everything the loader's own archive
limits let it unpack (Settings.archive_max_bytes), so a dry run refuses exactly what a load refuses
instead of failing on a full disk."""

from __future__ import annotations

import math

import pytest
from moodboard.catalog_diff import MAX_DRY_RUN_BYTES
from moodboard.settings import Settings

from infra_cdk.config import ConfigError, StackConfig
from tests.infra.conftest import Synth
from tests.infra.test_stack import function_ids

MIB = 1024 * 1024
# Beside the dry run's files: leftovers of a dry run killed mid-unpack are removed before the next
# one starts (catalog_diff.dry_run_folder), so only small files (a model-less cache) share /tmp.
HEADROOM_MB = 256


def dry_run_needs_mb(settings: Settings) -> int:
    return math.ceil((MAX_DRY_RUN_BYTES + settings.archive_max_bytes) / MIB) + HEADROOM_MB


def test_the_evaluations_function_has_room_for_the_largest_dry_run(any_synth: Synth) -> None:
    props = any_synth.resources[function_ids(any_synth)["evaluations"]]["Properties"]
    size = props["EphemeralStorage"]["Size"]
    assert size == any_synth.stack.config.evaluations_ephemeral_mb
    assert size >= dry_run_needs_mb(Settings()), (size, dry_run_needs_mb(Settings()))


def test_lambdas_default_tmp_would_not_hold_a_dry_run_and_the_stack_default_does() -> None:
    """Why the setting exists: Lambda's default 512 MB is far from what a dry run may unpack."""
    assert dry_run_needs_mb(Settings()) > 512
    assert StackConfig().evaluations_ephemeral_mb >= dry_run_needs_mb(Settings())


@pytest.mark.parametrize("value", [256, 20480])
def test_evaluations_ephemeral_outside_lambdas_range_is_refused(value: int) -> None:
    with pytest.raises(ConfigError, match="evaluations_ephemeral_mb"):
        StackConfig(evaluations_ephemeral_mb=value).validated()
