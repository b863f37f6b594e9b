"""The load state machine: a catalog loaded in shards by a Step Functions Distributed Map.

    Plan ── Published? ── Shards? ── Shards (Distributed Map: one worker per batch of shards) ── Reduce
               │ the job already       └── nothing to embed ─────────────────────────────────────┘
               │ published: Done
    a failure of Plan, Shards or Reduce ── RecordFailure (the job record says why) ── Failed

The contract of each step is moodboard.shards (docs/contracts.md, "Sharded loads"): Plan writes the
shard manifest `loads/<job>/shards.json` (a JSON array, one item per shard), which the map's
ItemReader reads; each worker gets `{"Items": [shard items], "BatchInput": {"job_id"}}` and writes
every shard's vectors under `loads/<job>/shards/`; the map writes its results (manifest.json and the
SUCCEEDED/FAILED files) under `loads/map-results/`, and Reduce reads them, builds the bundle from
every finished shard and publishes it with the conditional CURRENT write. A failed shard batch is
retried with backoff; a load tolerates `load_tolerated_failure_percent` of its shards failing
(their products are listed on the job and left out). The loader function (S3 uploads under
catalogs/, and POST /admin/load through it) starts one execution per job, named by the job id.
Execution history (every state's input and output) goes to the `logs` log group.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra_cdk.config import StackConfig
from infra_cdk.functions import LOADS_PREFIX, Functions, log_removal, retention
from infra_cdk.storage import Storage

MAP_RESULTS_PREFIX = f"{LOADS_PREFIX}map-results"
MAP_LABEL = "Shards"
EXECUTION_TIMEOUT = Duration.hours(24)
# A worker batch that fails (a Lambda error, a timeout, throttling) is tried again after 10 s, 20 s,
# 40 s (full jitter); the shards it finished before failing are skipped then (their output is their
# checkpoint).
WORKER_RETRY_INTERVAL = Duration.seconds(10)
WORKER_RETRY_BACKOFF = 2.0
WORKER_MAX_ATTEMPTS = 3
# S3 or DynamoDB failing (StoreError, moodboard.errors) is worth one more try of reduce; a
# PublishConflict (another load moved CURRENT) is not.
REDUCE_RETRY_ERRORS = ["StoreError"]
STATE_MACHINE_ARN_ENV = "MOODBOARD_LOAD_STATE_MACHINE_ARN"


class Loads(Construct):
    """`state_machine` (its `map` state and `log_group`), started by the loader function."""

    def __init__(self, scope: Construct, id: str, *, config: StackConfig, storage: Storage,
                 functions: Functions) -> None:
        super().__init__(scope, id)
        bucket = storage.artifacts_bucket

        plan = tasks.LambdaInvoke(
            self, "Plan", lambda_function=functions.load_plan, payload_response_only=True,
            result_path="$.plan", retry_on_service_exceptions=True,
            comment="read the catalog, keep unchanged products' vectors, write the shards and their manifest")
        worker = tasks.LambdaInvoke(
            self, "EmbedShards", lambda_function=functions.load_worker, payload_response_only=True,
            retry_on_service_exceptions=False, comment="embed each shard of the batch that has no output yet")
        worker.add_retry(errors=[sfn.Errors.ALL], interval=WORKER_RETRY_INTERVAL, backoff_rate=WORKER_RETRY_BACKOFF,
                         max_attempts=WORKER_MAX_ATTEMPTS, jitter_strategy=sfn.JitterType.FULL)
        self.map = sfn.DistributedMap(
            self, "Shards",
            item_reader=sfn.S3JsonItemReader(bucket=bucket, key=sfn.JsonPath.string_at("$.plan.shards_key")),
            # BatchInput is written as ASL (CDK renders its values as given, not as JsonPath tokens).
            item_batcher=sfn.ItemBatcher(max_items_per_batch=config.load_shards_per_worker,
                                         batch_input={"job_id.$": "$.plan.job_id"}),
            max_concurrency=config.load_max_concurrency,
            tolerated_failure_percentage=config.load_tolerated_failure_percent,
            # ResultWriterV2 (cdk.json enables it): the same ASL, without the deprecated API.
            result_writer_v2=sfn.ResultWriterV2(bucket=bucket, prefix=MAP_RESULTS_PREFIX),
            map_execution_type=sfn.StateMachineType.STANDARD,
            label=MAP_LABEL,
            result_path="$.map",
        )
        self.map.item_processor(worker)
        no_shards = sfn.Pass(self, "NothingToEmbed", result=sfn.Result.from_object({}), result_path="$.map")
        reduce = tasks.LambdaInvoke(
            self, "Reduce", lambda_function=functions.load_reduce, payload_response_only=True,
            payload=sfn.TaskInput.from_object({"job_id": sfn.JsonPath.string_at("$.plan.job_id"),
                                               "map": sfn.JsonPath.object_at("$.map")}),
            result_path="$.result", retry_on_service_exceptions=True,
            comment="build the bundle from every finished shard and CURRENT's unchanged products; publish it")
        reduce.add_retry(errors=REDUCE_RETRY_ERRORS, interval=Duration.seconds(30), backoff_rate=2.0, max_attempts=2)
        record_failure = tasks.LambdaInvoke(
            self, "RecordFailure", lambda_function=functions.load_reduce, payload_response_only=True,
            payload=sfn.TaskInput.from_object({"job_id": sfn.JsonPath.string_at("$.job_id"),
                                               "error": sfn.JsonPath.object_at("$.error")}),
            result_path=sfn.JsonPath.DISCARD, retry_on_service_exceptions=True,
            comment="mark the job failed with the error and the shards that finished")
        failed = sfn.Fail(self, "LoadFailed", error_path="$.error.Error", cause_path="$.error.Cause")
        record_failure.next(failed)
        for step in (plan, self.map, reduce):
            step.add_catch(record_failure, errors=[sfn.Errors.ALL], result_path="$.error")

        definition = plan.next(
            sfn.Choice(self, "Published?")
            .when(sfn.Condition.boolean_equals("$.plan.skip", True), sfn.Succeed(self, "AlreadyPublished"))
            .otherwise(
                sfn.Choice(self, "AnyShards?")
                .when(sfn.Condition.number_greater_than("$.plan.shards", 0), self.map.next(reduce))
                .otherwise(no_shards.next(reduce))))

        self.log_group = logs.LogGroup(
            self, "Logs", retention=retention(config.log_retention_days), removal_policy=log_removal(config),
            log_group_name=f"/aws/vendedlogs/states/moodboard-{config.stage}-loads")
        # The role gets exactly the statements below: CDK's own grants for these states would let the
        # map read every object of the bucket (its ItemReader key is a path into the execution's
        # state) and write anywhere in it (the ResultWriter).
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
                             description="moodboard load state machine")
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            role=self.role.without_policy_updates(),
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=EXECUTION_TIMEOUT,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            comment="moodboard: load a catalog in shards (plan, embed shards, reduce and publish)",
        )
        self.policy = iam.Policy(self, "Policy", roles=[self.role],
                                 statements=self._statements(functions, bucket.bucket_arn))
        self.state_machine.grant_start_execution(functions.loader)
        functions.loader.add_environment(STATE_MACHINE_ARN_ENV, self.state_machine.state_machine_arn)

    def _statements(self, functions: Functions, bucket_arn: str) -> list[iam.PolicyStatement]:
        """What the executions do: invoke the three steps, read the shard manifests and write the map's
        results under loads/, run the map's child executions, deliver logs and traces."""
        stack = Stack.of(self)
        executions = stack.format_arn(service="states", resource="execution", arn_format=ArnFormat.COLON_RESOURCE_NAME,
                                      resource_name=f"{self.state_machine.state_machine_name}:*")
        map_runs = stack.format_arn(service="states", resource="execution", arn_format=ArnFormat.COLON_RESOURCE_NAME,
                                    resource_name=f"{self.state_machine.state_machine_name}/{MAP_LABEL}:*")
        return [
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[
                functions.load_plan.function_arn, functions.load_worker.function_arn,
                functions.load_reduce.function_arn]),
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[f"{bucket_arn}/{LOADS_PREFIX}*"]),
            iam.PolicyStatement(actions=["s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts",
                                         "s3:AbortMultipartUpload"],
                                resources=[f"{bucket_arn}/{MAP_RESULTS_PREFIX}/*"]),
            # The Distributed Map runs its children as executions of this state machine.
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[self.state_machine.state_machine_arn]),
            iam.PolicyStatement(actions=["states:DescribeExecution", "states:StopExecution"], resources=[executions]),
            iam.PolicyStatement(actions=["states:RedriveExecution"], resources=[map_runs]),
            # CloudWatch Logs delivery and X-Ray accept no resource ARN.
            iam.PolicyStatement(actions=["logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery",
                                         "logs:DeleteLogDelivery", "logs:ListLogDeliveries", "logs:PutResourcePolicy",
                                         "logs:DescribeResourcePolicies", "logs:DescribeLogGroups"],
                                resources=["*"]),
            iam.PolicyStatement(actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords",
                                         "xray:GetSamplingRules", "xray:GetSamplingTargets"], resources=["*"]),
        ]
