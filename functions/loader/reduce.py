"""Load step 3 (`loader.reduce.handler`): build the bundle from every shard and publish it, or record the load's failure.

Events and contract: moodboard.shards (docs/contracts.md, "Sharded loads"); the state machine:
infra_cdk/loads.py. The work is in moodboard.load_steps; this module only wires.
"""

from __future__ import annotations

from typing import Any

from moodboard import load_steps
from moodboard.observability import instrument
from moodboard.runtime import get_runtime
from moodboard.settings import get_settings


def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return load_steps.reduce(event, get_runtime(get_settings()))


handler = instrument(_handle, function="load-reduce", correlation_path="job_id || BatchInput.job_id")
