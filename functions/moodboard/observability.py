"""Powertools Logger, Metrics and Tracer for the Lambda handlers, set up in one place.

Library code keeps logging through `logging.getLogger(__name__)`: those loggers are children of the
"moodboard" logger, which the Powertools Logger owns once a handler is instrumented, so in a Lambda
their records come out as JSON with the request's correlation id. The Logger and Tracer are built
when an instrumented handler first runs, so the CLI and `moodboard serve`, which never invoke a
handler, keep plain logs.

Metrics go to the CloudWatch namespace "moodboard" with the function as a dimension. The namespace
is always explicit, so tests and local runs never fail for want of POWERTOOLS_METRICS_NAMESPACE;
`record_metric` is a no-op when POWERTOOLS_METRICS_DISABLED is true (what `moodboard serve` sets),
and the Tracer disables itself outside Lambda. Request bodies, image bytes and tokens are never
logged: handlers log routes, statuses and timings only (`log_event=False`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

NAMESPACE = "moodboard"
LOGGER_NAME = "moodboard"

# Units used by callers, named so they need not import Powertools.
MILLISECONDS = MetricUnit.Milliseconds
COUNT = MetricUnit.Count

# Where the correlation id sits in each event shape (JMESPath).
API_GATEWAY_HTTP = "requestContext.requestId"
LOADER_EVENT = 'job_id || Records[0].responseElements."x-amz-request-id"'

metrics = Metrics(namespace=NAMESPACE)

Handler = Callable[[dict[str, Any], Any], Any]


def record_metric(name: str, unit: MetricUnit, value: float) -> None:
    """Add one metric value (SearchLatency, ResultCount, FetchFailures ...) unless metrics are off."""
    if is_metrics_disabled():
        return
    metrics.add_metric(name=name, unit=unit, value=value)


def flush_metrics() -> None:
    """Print the metrics recorded so far as one EMF line; an invocation that recorded none (a
    health check, a skipped event) prints nothing rather than Powertools' empty-set warning."""
    if metrics.metric_set:
        metrics.flush_metrics()


@functools.cache
def lambda_logger() -> Any:
    """The Powertools Logger owning the "moodboard" logger tree (JSON lines on stdout)."""
    from aws_lambda_powertools import Logger

    return Logger(service=LOGGER_NAME)


@functools.cache
def lambda_tracer() -> Any:
    """The Powertools Tracer (a no-op outside Lambda)."""
    from aws_lambda_powertools import Tracer

    return Tracer(service=NAMESPACE)


def instrument(handler: Handler, *, function: str, correlation_path: str | None = None) -> Handler:
    """Wrap a Lambda handler with the Powertools trio: JSON logs with the Lambda context and the
    correlation id found at `correlation_path` of the event, X-Ray tracing, and one metrics flush
    per invocation (the function name becomes a metric dimension).

    The Powertools objects are built on the first invocation, so importing a Lambda module (as
    `moodboard serve` does) changes no logging configuration.
    """
    wrapped: Handler | None = None

    def build() -> Handler:
        logger = lambda_logger()
        tracer = lambda_tracer()
        with warnings.catch_warnings():
            # Only one handler runs per Lambda process; tests build several and re-set the dimension.
            warnings.simplefilter("ignore")
            metrics.set_default_dimensions(function=function)

        def invoke(event: dict[str, Any], context: Any) -> Any:
            try:
                return handler(event, context)
            finally:
                flush_metrics()

        traced = tracer.capture_lambda_handler(invoke, capture_response=False)
        return logger.inject_lambda_context(traced, correlation_id_path=correlation_path, log_event=False,
                                            clear_state=True)

    @functools.wraps(handler)
    def entry(event: dict[str, Any], context: Any) -> Any:
        nonlocal wrapped
        if wrapped is None:
            wrapped = build()
        return wrapped(event, context)

    return entry
