"""Loader jobs: their records in DynamoDB (pk `job_id`) and the runners that start a load.

`POST /admin/load` creates a job and hands it to a `LoadRunner`: in AWS the loader Lambda is
invoked asynchronously (`LambdaLoadRunner`); under `moodboard serve` the load runs in a background
thread (`ThreadLoadRunner`, given the serve command's load function). The loader reports through
`JobStore.update` / `set_progress`; `GET /admin/load/{job}` reads the record back.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from moodboard.aws import aws_errors
from moodboard.dynamo import deserialize, dynamo_errors, serialize, utc_now
from moodboard.errors import MoodboardError, NotFound

logger = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "succeeded", "failed"]
MAX_REJECTS = 500
"""Rejects kept on a job record (DynamoDB items stop at 400 KB); `rejects_total` has the full count."""
MAX_ERROR = 2000


class LoadRequest(BaseModel):
    """Start a load of a catalog object already uploaded to the artifacts bucket."""

    model_config = ConfigDict(extra="forbid")

    catalog_key: str = Field(min_length=1, max_length=1024, description="S3 key, e.g. catalogs/spring.csv")
    confirm: bool = Field(default=False, description="load even when it would remove more than "
                                                     "load_confirm_removed_share of the products or a whole category")


class JobRecord(BaseModel):
    """One load job as stored and as `GET /admin/load/{job}` returns it."""

    job_id: str
    catalog_key: str
    status: JobStatus
    confirm: bool = False
    progress: dict[str, Any] = Field(default_factory=dict)
    rejects: list[dict[str, Any]] = Field(default_factory=list)
    rejects_total: int = 0
    error: str | None = None
    result: dict[str, Any] = Field(default_factory=dict)
    # A sharded load (moodboard.shards): its shards, those finished, and the shards failing now
    # (by shard number: {"error", "products", "attempts"}).
    shards_total: int = 0
    shards_done: int = 0
    shard_failures: dict[str, dict[str, Any]] = Field(default_factory=dict)
    execution_arn: str | None = None
    created_at: str
    updated_at: str


class JobStore:
    """Repository of loader jobs."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def create(self, catalog_key: str, *, job_id: str | None = None, confirm: bool = False) -> JobRecord:
        """A new queued job for `catalog_key`; `confirm` lets it remove what the load check guards
        (moodboard.catalog_diff.check_load). S3-triggered jobs never confirm."""
        now = utc_now()
        job = JobRecord(
            job_id=job_id or uuid.uuid4().hex, catalog_key=catalog_key, status="queued", confirm=confirm,
            created_at=now, updated_at=now
        )
        with dynamo_errors("create the load job"):
            self._client.put_item(
                TableName=self._table,
                Item=serialize(job.model_dump(exclude_none=True)),
                ConditionExpression="attribute_not_exists(job_id)",
            )
        return job

    def confirmed(self, job_id: str) -> bool:
        """Whether the job was started with confirm=true (False when it has no record)."""
        try:
            return self.get(job_id).confirm
        except NotFound:
            return False

    def get(self, job_id: str) -> JobRecord:
        """The job's current record; NotFound when there is no such job."""
        with dynamo_errors("read the load job"):
            response = self._client.get_item(
                TableName=self._table, Key={"job_id": {"S": job_id}}, ConsistentRead=True
            )
        if "Item" not in response:
            raise NotFound(f"load job {job_id!r} not found", details={"job_id": job_id})
        return JobRecord.model_validate(deserialize(response["Item"]))

    def update(
        self,
        job_id: str,
        *,
        status: JobStatus | None = None,
        progress: Mapping[str, Any] | None = None,
        rejects: Sequence[Mapping[str, Any]] | None = None,
        error: str | None = None,
        result: Mapping[str, Any] | None = None,
        execution_arn: str | None = None,
    ) -> JobRecord:
        """Set the given fields of an existing job (others untouched); NotFound when there is no such job.

        `rejects` replaces the stored list, keeping the first MAX_REJECTS and their total count.
        """
        values: dict[str, Any] = {"updated_at": utc_now()}
        if status is not None:
            values["status"] = status
        if progress is not None:
            values["progress"] = dict(progress)
        if rejects is not None:
            values["rejects"] = [dict(r) for r in rejects[:MAX_REJECTS]]
            values["rejects_total"] = len(rejects)
        if error is not None:
            values["error"] = error[:MAX_ERROR]
        if result is not None:
            values["result"] = dict(result)
        if execution_arn is not None:
            values["execution_arn"] = execution_arn
        names = {f"#a{i}": name for i, name in enumerate(values)}
        with dynamo_errors("update the load job",
                           condition_failed=NotFound(f"load job {job_id!r} not found", details={"job_id": job_id})):
            response = self._client.update_item(
                TableName=self._table,
                Key={"job_id": {"S": job_id}},
                UpdateExpression="SET " + ", ".join(f"{key} = :{key[1:]}" for key in names),
                ConditionExpression="attribute_exists(job_id)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=serialize({f":{key[1:]}": values[name] for key, name in names.items()}),
                ReturnValues="ALL_NEW",
            )
        return JobRecord.model_validate(deserialize(response["Attributes"]))

    def shards_planned(self, job_id: str, total: int) -> None:
        """A sharded load's plan: `total` shards, none finished, no failure recorded."""
        self._update_expression(job_id, "SET shards_total = :total, shards_done = :zero, shard_failures = :none, "
                                        "#status = :running, updated_at = :now",
                                {":total": total, ":zero": 0, ":none": {}, ":running": "running", ":now": utc_now()},
                                names={"#status": "status"})

    def shard_done(self, job_id: str, shard: int) -> None:
        """One more shard finished (counted atomically, many workers at once); its failure, if an
        earlier attempt recorded one, is cleared."""
        self._update_expression(job_id, "SET shards_done = shards_done + :one, updated_at = :now REMOVE shard_failures.#n",
                                {":one": 1, ":now": utc_now()}, names={"#n": str(shard)})

    def shard_failed(self, job_id: str, shard: int, failure: Mapping[str, Any]) -> None:
        """Record why an attempt at a shard failed (the map may still retry it)."""
        self._update_expression(job_id, "SET shard_failures.#n = :failure, updated_at = :now",
                                {":failure": dict(failure), ":now": utc_now()}, names={"#n": str(shard)})

    def set_shards(self, job_id: str, *, done: int, failures: Mapping[str, Mapping[str, Any]]) -> None:
        """The final count of a sharded load's shards, as the reduce step found them."""
        self._update_expression(job_id, "SET shards_done = :done, shard_failures = :failures, updated_at = :now",
                                {":done": done, ":failures": {k: dict(v) for k, v in failures.items()},
                                 ":now": utc_now()})

    def _update_expression(self, job_id: str, expression: str, values: Mapping[str, Any], *,
                           names: Mapping[str, str] | None = None) -> None:
        extra = {"ExpressionAttributeNames": dict(names)} if names else {}
        missing = NotFound(f"load job {job_id!r} not found", details={"job_id": job_id})
        with dynamo_errors("update the load job", condition_failed=missing):
            self._client.update_item(
                TableName=self._table, Key={"job_id": {"S": job_id}}, UpdateExpression=expression,
                ConditionExpression="attribute_exists(job_id)", ExpressionAttributeValues=serialize(values),
                **extra)

    def set_progress(self, job_id: str, done: int, total: int, *, stage: str | None = None) -> JobRecord:
        """Record progress as {"done", "total"[, "stage"]}; fits ingest's on_progress(done, total)."""
        progress: dict[str, Any] = {"done": done, "total": total}
        if stage:
            progress["stage"] = stage
        return self.update(job_id, status="running", progress=progress)


class LoadRunner(Protocol):
    """Starts a load job without waiting for it; failures to start raise MoodboardError."""

    def start(self, job_id: str, catalog_key: str) -> None: ...


class LambdaLoadRunner:
    """Invokes the loader Lambda asynchronously with the direct event {"job_id", "catalog_key"}."""

    def __init__(self, lambda_client: Any, function_name: str) -> None:
        self._client = lambda_client
        self._function = function_name

    def start(self, job_id: str, catalog_key: str) -> None:
        """Queue the invocation (InvocationType=Event); StoreError when Lambda refuses it."""
        payload = json.dumps({"job_id": job_id, "catalog_key": catalog_key}).encode()
        with aws_errors("Lambda", "start the loader"):
            self._client.invoke(FunctionName=self._function, InvocationType="Event", Payload=payload)
        logger.info("loader invoked for job %s", job_id)


class StateMachineLoadRunner:
    """Starts an execution of the load state machine (infra_cdk/loads.py) named by the job id, so an
    S3 event delivered twice starts one execution."""

    def __init__(self, sfn_client: Any, state_machine_arn: str) -> None:
        self._client = sfn_client
        self._arn = state_machine_arn

    def start(self, job_id: str, catalog_key: str, *, bucket: str | None = None) -> str | None:
        """The new execution's ARN; None when an execution of this job was started before."""
        payload: dict[str, Any] = {"job_id": job_id, "catalog_key": catalog_key}
        if bucket:
            payload["bucket"] = bucket
        with aws_errors("Step Functions", "start the load state machine"):
            try:
                response = self._client.start_execution(stateMachineArn=self._arn, name=job_id[:80],
                                                        input=json.dumps(payload))
            except self._client.exceptions.ExecutionAlreadyExists:
                logger.info("load job %s already has an execution", job_id)
                return None
        logger.info("load job %s started: %s", job_id, response["executionArn"])
        return str(response["executionArn"])


class ThreadLoadRunner:
    """Runs `target(job_id, catalog_key)` in a daemon thread (local mode); marks the job failed if it raises."""

    def __init__(self, target: Callable[[str, str], None], jobs: JobStore | None = None) -> None:
        self._target = target
        self._jobs = jobs
        self.threads: list[threading.Thread] = []

    def start(self, job_id: str, catalog_key: str) -> None:
        """Start the load and return at once."""
        thread = threading.Thread(target=self._run, args=(job_id, catalog_key), name=f"load-{job_id}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def _run(self, job_id: str, catalog_key: str) -> None:
        try:
            self._target(job_id, catalog_key)
        except Exception as exc:
            logger.exception("load job %s failed", job_id)
            if self._jobs is not None:
                try:
                    self._jobs.update(job_id, status="failed", error=f"{type(exc).__name__}: {exc}")
                except MoodboardError:
                    logger.exception("could not mark load job %s failed", job_id)
