"""Loader Lambda entry point: `loader.handler.handler` (same container image as search).

Takes S3 ObjectCreated events for catalogs under `catalogs/` and direct events
`{"job_id", "catalog_key"}` (from `POST /admin/load`). In the stack (MOODBOARD_LOAD_STATE_MACHINE_ARN
set) it starts one execution of the load state machine per job, which loads the catalog in shards
(infra_cdk/loads.py); without one it loads the catalog in this invocation. The work is in
moodboard.loading.
"""

from __future__ import annotations

from typing import Any

from moodboard.aws import client
from moodboard.load_jobs import JobStore, StateMachineLoadRunner
from moodboard.loading import CatalogLoader, jobs_from_event, run_jobs, start_jobs
from moodboard.observability import LOADER_EVENT, instrument
from moodboard.runtime import get_runtime
from moodboard.settings import get_settings


def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    runtime = get_runtime(get_settings())
    settings = runtime.settings
    if settings.load_state_machine_arn:  # AWS: the load runs in shards on the state machine
        runner = StateMachineLoadRunner(client("stepfunctions", settings), settings.load_state_machine_arn)
        return {"results": start_jobs(runner, JobStore(runtime.dynamodb, settings.jobs_table), jobs_from_event(event))}
    loader = CatalogLoader(store=runtime.artifact_store(), jobs=JobStore(runtime.dynamodb, settings.jobs_table),
                           embedder=runtime.embedder(), settings=settings)
    return {"results": run_jobs(loader, jobs_from_event(event))}


handler = instrument(_handle, function="loader", correlation_path=LOADER_EVENT)
