"""Alarms: errors, throttles and p99 duration of each function; 5xx and p99 latency of the API;
failed and timed-out executions of the load state machine.

They notify one SNS topic; pass `alarm_email` in context to subscribe someone to it.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra_cdk.config import StackConfig

PERIOD = Duration.minutes(5)
# p99 duration alarms fire at this share of the function's timeout.
DURATION_SHARE = 0.8
API_P99_LATENCY_MS = 5000
API_5XX_PER_PERIOD = 5


class Monitoring(Construct):
    """`topic` and `alarms` (by name)."""

    def __init__(self, scope: Construct, id: str, *, config: StackConfig, functions: dict[str, lambda_.Function],
                 api: apigw.HttpApi, state_machine: sfn.StateMachine) -> None:
        super().__init__(scope, id)
        self.topic = sns.Topic(self, "Alarms", display_name=f"moodboard {config.stage} alarms", enforce_ssl=True)
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for name, fn in functions.items():
            self._alarm(f"{name}-errors", fn.metric_errors(period=PERIOD, statistic="Sum"), 1,
                        f"the {name} function raised errors")
            self._alarm(f"{name}-throttles", fn.metric_throttles(period=PERIOD, statistic="Sum"), 1,
                        f"invocations of the {name} function were throttled")
            self._alarm(f"{name}-p99-duration", fn.metric_duration(period=PERIOD, statistic="p99"),
                        fn.timeout.to_milliseconds() * DURATION_SHARE,
                        f"the {name} function's p99 duration is near its timeout")
        self._alarm("api-5xx", api.metric_server_error(period=PERIOD, statistic="Sum"), API_5XX_PER_PERIOD,
                    "the API answered with 5xx errors")
        self._alarm("api-p99-latency", api.metric_latency(period=PERIOD, statistic="p99"), API_P99_LATENCY_MS,
                    "the API's p99 latency is high")
        self._alarm("load-executions-failed", state_machine.metric_failed(period=PERIOD, statistic="Sum"), 1,
                    "a catalog load failed (its job record and execution history say why)")
        self._alarm("load-executions-timed-out", state_machine.metric_timed_out(period=PERIOD, statistic="Sum"), 1,
                    "a catalog load ran past the state machine's timeout")

    def _alarm(self, name: str, metric: cloudwatch.Metric, threshold: float, description: str) -> None:
        alarm = metric.create_alarm(
            self, name,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"moodboard: {description}",
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        self.alarms[name] = alarm
