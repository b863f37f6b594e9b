"""The three Lambdas: search and loader from one container image, evaluations as a small zip.

Each function gets its own role with no managed policies: it may write its own log group, send
X-Ray traces, and exactly the data access granted below with `grant_*`.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Size, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from constructs import Construct

from infra_cdk.bundling import layer_bundling
from infra_cdk.config import StackConfig
from infra_cdk.storage import Storage

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"
LAYER_DIR = Path(__file__).resolve().parent / "layers" / "evaluations"
DOCKERFILE = "functions/Dockerfile"

SEARCH_HANDLER = "search.app.handler"
LOADER_HANDLER = "loader.handler.handler"
EVALUATIONS_HANDLER = "evaluations.app.handler"
# The image's Python; onnxruntime >= 1.20 wheels need glibc 2.28, which the 3.12 image (AL2023) has.
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.X86_64
MODEL_DIR_IN_IMAGE = "/opt/model"
# Image stages of functions/Dockerfile: with the model bundle baked in, or without it.
TARGET_WITH_MODEL = "with-model"
TARGET_WITHOUT_MODEL = "runtime"
SERVICE = "moodboard"
CATALOG_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".zip", ".tar", ".tar.gz", ".tgz")
# Only what the evaluations zip needs from functions/ (the rest ships in the container image).
EVALUATIONS_EXCLUDE = ["search", "loader", "Dockerfile", "requirements-runtime.txt", "**/__pycache__", "**/*.pyc"]


class Functions(Construct):
    """`search`, `loader` and `evaluations` functions, their `image` asset and `layer`."""

    def __init__(self, scope: Construct, id: str, *, config: StackConfig, storage: Storage) -> None:
        super().__init__(scope, id)
        self.config = config
        bucket = storage.artifacts_bucket
        common_env = {
            "MOODBOARD_STAGE": config.stage,
            "MOODBOARD_AWS_REGION": Stack.of(self).region,
            "MOODBOARD_ARTIFACTS_BUCKET": bucket.bucket_name,
            "MOODBOARD_HISTORY_TABLE": storage.history_table.table_name,
            "MOODBOARD_EVALUATIONS_TABLE": storage.evaluations_table.table_name,
            "MOODBOARD_SEARCH_URLS_TABLE": storage.search_urls_table.table_name,
            "MOODBOARD_JOBS_TABLE": storage.jobs_table.table_name,
            "MOODBOARD_ROUNDS_TABLE": storage.rounds_table.table_name,
            "POWERTOOLS_METRICS_NAMESPACE": SERVICE,
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        if config.code_version:
            common_env["MOODBOARD_CODE_VERSION"] = config.code_version
        model_env = {"MOODBOARD_PRECISION": config.precision}
        if config.model_in_image:
            model_env["MOODBOARD_MODEL_DIR"] = MODEL_DIR_IN_IMAGE
        else:
            model_env["MOODBOARD_MODEL_S3_URI"] = f"s3://{bucket.bucket_name}/{config.model_s3_prefix}"

        self.image = ecr_assets.DockerImageAsset(
            self, "Image",
            directory=str(ROOT),
            file=DOCKERFILE,
            target=TARGET_WITH_MODEL if config.model_in_image else TARGET_WITHOUT_MODEL,
            platform=ecr_assets.Platform.LINUX_AMD64,
        )

        self.search = self._image_function(
            "Search", SEARCH_HANDLER, config.search_memory_mb, config.search_timeout_s,
            ephemeral_mb=config.search_ephemeral_mb,
            # MOODBOARD_PRELOAD: model and index load in the init phase (before the first request,
            # with the init phase's full CPU), side by side; see moodboard.runtime.Runtime.preload.
            environment={**common_env, **model_env, "POWERTOOLS_SERVICE_NAME": "search",
                         "MOODBOARD_TRUST_GATEWAY_AUTH": "true", "MOODBOARD_PRELOAD": "true"},
            description="moodboard search API: CLIP (onnxruntime) + hnswlib gist search",
        )
        self.loader = self._image_function(
            "Loader", LOADER_HANDLER, config.loader_memory_mb, config.loader_timeout_s,
            ephemeral_mb=config.loader_ephemeral_mb,
            environment={**common_env, **model_env, "POWERTOOLS_SERVICE_NAME": "loader"},
            description="moodboard loader: catalog -> embeddings -> index bundle, published to S3",
            reserved_concurrency=config.loader_reserved_concurrency or None,
        )

        self.layer = lambda_.LayerVersion(
            self, "EvaluationsDeps",
            code=lambda_.Code.from_asset(str(LAYER_DIR), bundling=layer_bundling(
                LAYER_DIR / "requirements.txt", RUNTIME, ARCHITECTURE)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="fastapi, mangum, pydantic(-settings), powertools for the evaluations function",
        )
        self.evaluations = lambda_.Function(
            self, "Evaluations",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=EVALUATIONS_HANDLER,
            code=lambda_.Code.from_asset(str(FUNCTIONS_DIR), exclude=EVALUATIONS_EXCLUDE),
            layers=[self.layer],
            memory_size=config.evaluations_memory_mb,
            timeout=Duration.seconds(config.evaluations_timeout_s),
            environment={**common_env, "POWERTOOLS_SERVICE_NAME": "evaluations",
                         "MOODBOARD_TRUST_GATEWAY_AUTH": "true",
                         "MOODBOARD_LOADER_FUNCTION_NAME": self.loader.function_name},
            description="moodboard evaluations, history, search URLs and load jobs (admin API)",
            **self._basics("Evaluations"),
        )

        self._grant(storage)
        for suffix in CATALOG_SUFFIXES:
            bucket.add_event_notification(
                s3.EventType.OBJECT_CREATED, s3n.LambdaDestination(self.loader),
                s3.NotificationKeyFilter(prefix="catalogs/", suffix=suffix),
            )

    @property
    def all(self) -> dict[str, lambda_.Function]:
        """The functions by short name (for alarms and tests)."""
        return {"search": self.search, "loader": self.loader, "evaluations": self.evaluations}

    def _grant(self, storage: Storage) -> None:
        bucket = storage.artifacts_bucket
        # search: reads index and model bundles, records each search (PutItem only).
        bucket.grant_read(self.search, "indexes/*")
        storage.history_table.grant(self.search, "dynamodb:PutItem")
        # loader: reads catalogs, reads the previous index and publishes a new one, tracks its job.
        bucket.grant_read(self.loader, "catalogs/*")
        bucket.grant_read(self.loader, "indexes/*")
        bucket.grant_put(self.loader, "indexes/*")
        storage.jobs_table.grant_read_write_data(self.loader)
        if not self.config.model_in_image:
            bucket.grant_read(self.search, f"{self.config.model_s3_prefix}*")
            bucket.grant_read(self.loader, f"{self.config.model_s3_prefix}*")
        # evaluations: reads history (to check a rated product was in the search), owns the rest.
        storage.history_table.grant_read_data(self.evaluations)
        for table in (storage.evaluations_table, storage.search_urls_table, storage.jobs_table):
            table.grant_read_write_data(self.evaluations)
        # rounds: the team's evaluation rounds (create, read, list, add a run, delete).
        storage.rounds_table.grant(self.evaluations, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                   "dynamodb:Scan", "dynamodb:DeleteItem")
        self.loader.grant_invoke(self.evaluations)

    def _image_function(self, id: str, handler: str, memory_mb: int, timeout_s: int, *, ephemeral_mb: int,
                        environment: dict[str, str], description: str,
                        reserved_concurrency: int | None = None) -> lambda_.DockerImageFunction:
        return lambda_.DockerImageFunction(
            self, id,
            code=lambda_.DockerImageCode.from_ecr(
                self.image.repository, tag_or_digest=self.image.image_tag, cmd=[handler]),
            architecture=ARCHITECTURE,
            memory_size=memory_mb,
            timeout=Duration.seconds(timeout_s),
            ephemeral_storage_size=Size.mebibytes(ephemeral_mb),
            environment=environment,
            description=description,
            reserved_concurrent_executions=reserved_concurrency,
            **self._basics(id),
        )

    def _basics(self, id: str) -> dict[str, object]:
        """Role (no managed policies), log group with retention, X-Ray tracing."""
        log_group = logs.LogGroup(
            self, f"{id}Logs",
            retention=retention(self.config.log_retention_days),
            removal_policy=log_removal(self.config),
        )
        role = iam.Role(self, f"{id}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description=f"moodboard {id.lower()} function")
        log_group.grant_write(role)
        return {"role": role, "log_group": log_group, "tracing": lambda_.Tracing.ACTIVE}


RETENTION = {
    1: logs.RetentionDays.ONE_DAY, 3: logs.RetentionDays.THREE_DAYS, 7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS, 30: logs.RetentionDays.ONE_MONTH, 60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS, 180: logs.RetentionDays.SIX_MONTHS, 365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
}


def retention(days: int) -> logs.RetentionDays:
    """CloudWatch Logs retention for a number of days (one of RETENTION's keys)."""
    try:
        return RETENTION[days]
    except KeyError:
        raise ValueError(f"log_retention_days {days}: one of {sorted(RETENTION)}") from None


def log_removal(config: StackConfig) -> RemovalPolicy:
    """Logs outlive a production stack; elsewhere they go with it."""
    return RemovalPolicy.RETAIN if config.is_production else RemovalPolicy.DESTROY
