"""Load step 1 (`loader.plan.handler`): plan a sharded load: read the catalog, keep unchanged products, write the shards.

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
    return load_steps.plan(event, get_runtime(get_settings()))


handler = instrument(_handle, function="load-plan", correlation_path="job_id || BatchInput.job_id")
