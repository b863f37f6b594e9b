"""The load state machine, asserted from the synthesized template (both configurations): the
Distributed Map's reader, batcher, concurrency, retry, tolerated failures and result writer, the
reduce step after it, failure handling, the state machine's own IAM, logs, the alarm on failed
executions, and who may start it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.conftest import Synth
from tests.infra.test_stack import as_list, environment, function_ids, refs, role_of, role_statements

pytestmark = pytest.mark.slow


def state_machine(synth: Synth) -> dict[str, Any]:
    (machine,) = synth.of_type("AWS::StepFunctions::StateMachine").values()
    return machine["Properties"]


def definition(synth: Synth) -> dict[str, Any]:
    """The ASL, with each token of the template written `<LogicalId>` or `<LogicalId.Attr>`."""
    def text(part: Any) -> str:
        if isinstance(part, str):
            return part
        if "Ref" in part:
            return f"<{part['Ref']}>"
        if "Fn::GetAtt" in part:
            return "<{}.{}>".format(*part["Fn::GetAtt"])
        raise AssertionError(f"unexpected token {part}")

    body = state_machine(synth)["DefinitionString"]
    return json.loads("".join(text(p) for p in body["Fn::Join"][1]) if isinstance(body, dict) else body)


def arn_of(synth: Synth, name: str) -> str:
    return f"<{function_ids(synth)[name]}.Arn>"


def test_the_map_reads_the_plans_shard_manifest_from_s3_and_batches_shards(any_synth: Synth) -> None:
    config = any_synth.stack.config
    bucket = f"<{any_synth.logical_id(any_synth.stack.storage.artifacts_bucket)}>"
    states = definition(any_synth)["States"]
    shards = states["Shards"]
    assert shards["Type"] == "Map"
    assert shards["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    reader = shards["ItemReader"]
    assert reader["Resource"] == "arn:<AWS::Partition>:states:::s3:getObject"
    assert reader["ReaderConfig"] == {"InputType": "JSON"}
    assert reader["Parameters"] == {"Bucket": bucket, "Key.$": "$.plan.shards_key"}
    assert shards["ItemBatcher"] == {"MaxItemsPerBatch": config.load_shards_per_worker,
                                     "BatchInput": {"job_id.$": "$.plan.job_id"}}
    assert shards["MaxConcurrency"] == config.load_max_concurrency
    # ASL's default is 0, and CDK leaves a 0 out.
    assert shards.get("ToleratedFailurePercentage", 0) == config.load_tolerated_failure_percent
    assert shards["ResultWriter"] == {"Resource": "arn:<AWS::Partition>:states:::s3:putObject",
                                      "Parameters": {"Bucket": bucket, "Prefix": "loads/map-results"}}
    assert shards["ResultPath"] == "$.map" and shards["Next"] == "Reduce"


def test_map_settings_come_from_context(default_synth: Synth, domain_synth: Synth) -> None:
    def settings(synth: Synth) -> tuple[Any, ...]:
        shards = definition(synth)["States"]["Shards"]
        return (shards["MaxConcurrency"], shards["ItemBatcher"]["MaxItemsPerBatch"],
                shards.get("ToleratedFailurePercentage", 0))

    assert settings(default_synth) == (10, 1, 5)  # the defaults, stated in infra_cdk/config.py
    assert settings(domain_synth) == (40, 2, 0)


def test_each_shard_batch_runs_the_worker_and_is_retried_with_backoff(any_synth: Synth) -> None:
    processor = definition(any_synth)["States"]["Shards"]["ItemProcessor"]
    assert processor["StartAt"] == "EmbedShards"
    worker = processor["States"]["EmbedShards"]
    assert worker["Type"] == "Task" and worker["Resource"] == arn_of(any_synth, "load-worker")
    assert "Parameters" not in worker  # the worker gets the batch as the map delivers it: {Items, BatchInput}
    (retry,) = worker["Retry"]
    assert retry["ErrorEquals"] == ["States.ALL"]
    assert retry["MaxAttempts"] == 3 and retry["IntervalSeconds"] == 10 and retry["BackoffRate"] == 2
    assert retry["JitterStrategy"] == "FULL"
    assert worker["End"] is True


def test_plan_comes_first_and_reduce_publishes_after_the_map(any_synth: Synth) -> None:
    asl = definition(any_synth)
    states = asl["States"]
    assert asl["StartAt"] == "Plan"
    assert states["Plan"]["Resource"] == arn_of(any_synth, "load-plan") and states["Plan"]["ResultPath"] == "$.plan"
    assert states["Plan"]["Next"] == "Published?"
    published = states["Published?"]
    assert published["Choices"] == [{"Variable": "$.plan.skip", "BooleanEquals": True, "Next": "AlreadyPublished"}]
    assert states[published["Default"]]["Choices"] == [
        {"Variable": "$.plan.shards", "NumericGreaterThan": 0, "Next": "Shards"}]
    assert states["NothingToEmbed"]["Next"] == "Reduce"
    reduce = states["Reduce"]
    assert reduce["Resource"] == arn_of(any_synth, "load-reduce")
    assert reduce["Parameters"] == {"job_id.$": "$.plan.job_id", "map.$": "$.map"}
    assert reduce["End"] is True
    assert {"ErrorEquals": ["StoreError"], "IntervalSeconds": 30, "MaxAttempts": 2, "BackoffRate": 2} in reduce["Retry"]
    assert asl["TimeoutSeconds"] == 24 * 3600


def test_a_failure_of_any_step_is_recorded_on_the_job_and_fails_the_execution(any_synth: Synth) -> None:
    states = definition(any_synth)["States"]
    for name in ("Plan", "Shards", "Reduce"):
        assert states[name]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                                          "Next": "RecordFailure"}], name
    record = states["RecordFailure"]
    assert record["Resource"] == arn_of(any_synth, "load-reduce")
    assert record["Parameters"] == {"job_id.$": "$.job_id", "error.$": "$.error"}
    assert record["ResultPath"] is None and record["Next"] == "LoadFailed"
    assert states["LoadFailed"] == {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}


def test_the_state_machine_role_invokes_the_steps_and_touches_only_loads(any_synth: Synth) -> None:
    props = state_machine(any_synth)
    (role,) = refs(props["RoleArn"])
    bucket = any_synth.logical_id(any_synth.stack.storage.artifacts_bucket)
    statements = role_statements(any_synth, role)
    invoked = {r for s in statements if "lambda:InvokeFunction" in as_list(s["Action"])
               for r in refs(s["Resource"])}
    assert invoked == {function_ids(any_synth)[name] for name in ("load-plan", "load-worker", "load-reduce")}
    s3 = {(a, json.dumps(r)) for s in statements for a in as_list(s["Action"]) if a.startswith("s3:")
          for r in as_list(s["Resource"])}
    reads = {resource for action, resource in s3 if action == "s3:GetObject"}
    writes = {resource for action, resource in s3 if action == "s3:PutObject"}
    assert all(bucket in r and r.endswith(('/loads/*"]]}', '/loads/map-results/*"]]}')) for r in reads), reads
    assert writes and all(r.endswith('/loads/map-results/*"]]}') for r in writes), writes
    machine = any_synth.logical_id(any_synth.stack.loads.state_machine)
    starts = [s for s in statements if "states:StartExecution" in as_list(s["Action"])]
    assert [refs(s["Resource"]) for s in starts] == [{machine}]  # its own child executions only
    assert not [s for s in statements if as_list(s["Resource"]) == ["*"]
                and not all(a.startswith(("logs:", "xray:")) for a in as_list(s["Action"]))]


def test_executions_log_every_state_and_are_traced(any_synth: Synth) -> None:
    props = state_machine(any_synth)
    logging = props["LoggingConfiguration"]
    assert logging["Level"] == "ALL" and logging["IncludeExecutionData"] is True
    (group,) = refs(logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"])
    log_group = any_synth.resources[group]["Properties"]
    stage = any_synth.stack.config.stage
    assert log_group["LogGroupName"] == f"/aws/vendedlogs/states/moodboard-{stage}-loads"
    assert log_group["RetentionInDays"] == any_synth.stack.config.log_retention_days
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["StateMachineType"] == "STANDARD"


def test_the_loader_starts_executions_and_nothing_else_may(any_synth: Synth) -> None:
    machine = any_synth.logical_id(any_synth.stack.loads.state_machine)
    fns = function_ids(any_synth)
    starters = set()
    for name, fid in fns.items():
        for statement in role_statements(any_synth, role_of(any_synth, fid)):
            if "states:StartExecution" in as_list(statement["Action"]):
                assert refs(statement["Resource"]) == {machine}
                starters.add(name)
    assert starters == {"loader"}
    assert refs(environment(any_synth, "loader")["MOODBOARD_LOAD_STATE_MACHINE_ARN"]) == {machine}
    # POST /admin/load reaches the loader (evaluations may invoke it), which starts the execution.
    assert environment(any_synth, "load-plan")["MOODBOARD_LOAD_SHARD_SIZE"] == str(any_synth.stack.config.load_shard_size)


def test_failed_and_timed_out_executions_raise_alarms(any_synth: Synth) -> None:
    machine = any_synth.logical_id(any_synth.stack.loads.state_machine)
    topic = next(iter(any_synth.of_type("AWS::SNS::Topic")))
    found = {}
    for alarm in any_synth.of_type("AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        if props["Namespace"] == "AWS/States":
            assert refs(props["Dimensions"][0]["Value"]) == {machine}
            assert refs(props["AlarmActions"]) == {topic}
            found[props["MetricName"]] = (props["Threshold"], props["ComparisonOperator"])
    assert found == {"ExecutionsFailed": (1, "GreaterThanOrEqualToThreshold"),
                     "ExecutionsTimedOut": (1, "GreaterThanOrEqualToThreshold")}


def test_a_loads_files_expire_from_the_bucket(any_synth: Synth) -> None:
    bucket = any_synth.resources[any_synth.logical_id(any_synth.stack.storage.artifacts_bucket)]
    rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    (loads,) = [rule for rule in rules if rule.get("Prefix") == "loads/"]
    assert loads["ExpirationInDays"] == 14 and loads["Status"] == "Enabled"
