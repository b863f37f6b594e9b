"""The Lambdas: search, the loader and the three steps of a sharded load (plan, worker, reduce) from
one container image, evaluations as a small zip. The load steps run in the state machine of
infra_cdk/loads.py; the loader (S3 uploads of catalogs, and POST /admin/load through evaluations)
starts its executions.

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
# The artifacts bucket's index keys (moodboard.artifacts, moodboard.index_versions; kept in step by
# tests/infra/test_index_grants.py).
INDEX_VERSIONS_PREFIX = "indexes/"
CURRENT_KEY = "indexes/CURRENT"
INDEX_CARDS_PREFIX = "index-cards/"
LAYER_DIR = Path(__file__).resolve().parent / "layers" / "evaluations"
DOCKERFILE = "functions/Dockerfile"

SEARCH_HANDLER = "search.app.handler"
LOADER_HANDLER = "loader.handler.handler"
LOAD_PLAN_HANDLER = "loader.plan.handler"
LOAD_WORKER_HANDLER = "loader.worker.handler"
LOAD_REDUCE_HANDLER = "loader.reduce.handler"
# The loader only starts executions (infra_cdk/loads.py): little memory, a short timeout.
LOADER_MEMORY_MB = 512
LOADER_TIMEOUT_S = 60
LOADS_PREFIX = "loads/"
# Catalogs uploaded from the team page (moodboard.catalog_uploads.UPLOAD_PREFIX): outside catalogs/, so the
# S3 trigger never starts a load for one; the team dry-runs it, then loads it (POST /admin/load).
UPLOADS_PREFIX = "uploads/catalogs/"
# Uploaded inspiration pictures of evaluation rounds (moodboard.round_pictures.PICTURES_PREFIX): the search
# function stores them (POST /rounds/pictures, create-only), evaluations checks and serves them.
ROUND_PICTURES_PREFIX = "rounds/pictures/"
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
    """`search`, `loader`, `load_plan`, `load_worker`, `load_reduce` and `evaluations` functions, their
    `image` asset and `layer`."""

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
            "Loader", LOADER_HANDLER, LOADER_MEMORY_MB, LOADER_TIMEOUT_S, ephemeral_mb=512,
            environment={**common_env, "POWERTOOLS_SERVICE_NAME": "loader"},
            description="moodboard loader: starts the load state machine for an uploaded catalog or POST /admin/load",
            reserved_concurrency=config.loader_reserved_concurrency or None,
        )
        shard_env = {"MOODBOARD_LOAD_SHARD_SIZE": str(config.load_shard_size)}
        self.load_plan = self._image_function(
            "LoadPlan", LOAD_PLAN_HANDLER, config.load_plan_memory_mb, config.loader_timeout_s,
            ephemeral_mb=config.loader_ephemeral_mb,
            environment={**common_env, **model_env, **shard_env, "POWERTOOLS_SERVICE_NAME": "load-plan"},
            description="moodboard load, step 1: read the catalog, keep unchanged products, write the shards",
        )
        self.load_worker = self._image_function(
            "LoadWorker", LOAD_WORKER_HANDLER, config.loader_memory_mb, config.loader_timeout_s,
            ephemeral_mb=config.loader_ephemeral_mb,
            environment={**common_env, **model_env, "POWERTOOLS_SERVICE_NAME": "load-worker"},
            description="moodboard load, step 2 (per shard): fetch and embed a shard's images, write its vectors",
        )
        self.load_reduce = self._image_function(
            "LoadReduce", LOAD_REDUCE_HANDLER, config.load_reduce_memory_mb, config.loader_timeout_s,
            ephemeral_mb=config.load_reduce_ephemeral_mb,
            environment={**common_env, "POWERTOOLS_SERVICE_NAME": "load-reduce"},
            description="moodboard load, step 3: build the index bundle from every shard and publish it",
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
            # a dry run unpacks a catalog archive here (StackConfig.evaluations_ephemeral_mb says why)
            ephemeral_storage_size=Size.mebibytes(config.evaluations_ephemeral_mb),
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
        return {"search": self.search, "loader": self.loader, "evaluations": self.evaluations,
                "load-plan": self.load_plan, "load-worker": self.load_worker, "load-reduce": self.load_reduce}

    def _grant(self, storage: Storage) -> None:
        bucket = storage.artifacts_bucket
        # search: reads index and model bundles, records each search (PutItem only).
        bucket.grant_read(self.search, "indexes/*")
        storage.history_table.grant(self.search, "dynamodb:PutItem")
        # Its one write: a round's uploaded picture (its team route, POST /rounds/pictures), under
        # rounds/pictures/ only and create-only: the put must carry If-None-Match, so S3 refuses to
        # replace a stored picture even for a compromised search function.
        self.search.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{ROUND_PICTURES_PREFIX}*")],
            conditions={"Null": {"s3:if-none-match": "false"}}))
        # loader: creates the job record and starts the state machine (granted in infra_cdk/loads.py).
        jobs = storage.jobs_table
        jobs.grant(self.loader, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        # plan: reads the catalog and the CURRENT index's records, writes the job's shards under loads/.
        bucket.grant_read(self.load_plan, "catalogs/*")
        bucket.grant_read(self.load_plan, f"{UPLOADS_PREFIX}*")
        bucket.grant_read(self.load_plan, "indexes/*")
        bucket.grant_read(self.load_plan, f"{LOADS_PREFIX}*")
        bucket.grant_put(self.load_plan, f"{LOADS_PREFIX}*")
        # worker: reads its shard and the shard's images (catalogs/, or an archive's under loads/),
        # writes the shard's vectors under loads/.
        bucket.grant_read(self.load_worker, "catalogs/*")
        bucket.grant_read(self.load_worker, f"{UPLOADS_PREFIX}*")
        bucket.grant_read(self.load_worker, f"{LOADS_PREFIX}*")
        bucket.grant_put(self.load_worker, f"{LOADS_PREFIX}*")
        # reduce: reads the shards and the CURRENT index, publishes the new one under indexes/.
        bucket.grant_read(self.load_reduce, f"{LOADS_PREFIX}*")
        bucket.grant_read(self.load_reduce, "indexes/*")
        bucket.grant_put(self.load_reduce, "indexes/*")
        bucket.grant_put(self.load_reduce, f"{LOADS_PREFIX}*")
        # The job record: plan creates it when an execution was started by hand, workers count their
        # shards (UpdateItem ADD), reduce records the outcome.
        jobs.grant(self.load_plan, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        jobs.grant(self.load_worker, "dynamodb:UpdateItem")
        jobs.grant(self.load_reduce, "dynamodb:GetItem", "dynamodb:UpdateItem")
        if not self.config.model_in_image:
            for reader in (self.search, self.load_plan, self.load_worker):
                bucket.grant_read(reader, f"{self.config.model_s3_prefix}*")
        # evaluations: reads history (to check a rated product was in the search), owns the rest.
        storage.history_table.grant_read_data(self.evaluations)
        # Registering a round's run (POST /rounds/{id}/runs) keeps its searches: UpdateItem REMOVE ttl
        # (moodboard.history.HistoryStore.keep). Only that: the table itself (no GSI), the key and `ttl`
        # as the only attributes a request may name, nothing returned, so no record's results can change.
        self.evaluations.add_to_role_policy(iam.PolicyStatement(
            actions=["dynamodb:UpdateItem"], resources=[storage.history_table.table_arn],
            conditions={"ForAllValues:StringEquals": {"dynamodb:Attributes": ["search_id", "ttl"]},
                        "StringEqualsIfExists": {"dynamodb:ReturnValues": "NONE"}}))
        for table in (storage.evaluations_table, storage.search_urls_table, storage.jobs_table):
            table.grant_read_write_data(self.evaluations)
        # rounds: the team's evaluation rounds (create, read, list, add a run, delete).
        storage.rounds_table.grant(self.evaluations, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                   "dynamodb:Scan", "dynamodb:DeleteItem")
        self.loader.grant_invoke(self.evaluations)
        # index versions (GET /admin/indexes, POST /admin/indexes/{v}/promote; moodboard.index_versions)
        # and the dry run of a load (POST /admin/load/dry-run; moodboard.catalog_diff):
        # list the version folders under indexes/, read CURRENT, the versions' cards and manifests,
        # and move CURRENT with the conditional write. Nothing else under indexes/ is read or written.
        self.evaluations.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
            conditions={"StringEquals": {"s3:prefix": [INDEX_VERSIONS_PREFIX]}}))
        self.evaluations.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject"],
            resources=[bucket.arn_for_objects(CURRENT_KEY), bucket.arn_for_objects(f"{INDEX_CARDS_PREFIX}*"),
                       bucket.arn_for_objects(f"{INDEX_VERSIONS_PREFIX}*/manifest.json"),
                       # the dry run of a load: the catalog, and CURRENT's product records
                       bucket.arn_for_objects("catalogs/*"),
                       bucket.arn_for_objects(f"{UPLOADS_PREFIX}*"),
                       bucket.arn_for_objects(f"{INDEX_VERSIONS_PREFIX}*/products.jsonl"),
                       # a round's uploaded pictures (GET /rounds/{id}/items/{item}/picture)
                       bucket.arn_for_objects(f"{ROUND_PICTURES_PREFIX}*")]))
        # Creating a round checks its uploaded pictures are stored: a listing of the picture's own key
        # (moodboard.round_pictures.picture_stored), so only under rounds/pictures/.
        self.evaluations.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{ROUND_PICTURES_PREFIX}*"]}}))
        # PutObject on CURRENT (promotion) and on the uploads prefix: the presigned POST of
        # POST /admin/catalog-uploads is signed with this role, so it may write nothing else.
        self.evaluations.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:PutObject"],
            resources=[bucket.arn_for_objects(CURRENT_KEY), bucket.arn_for_objects(f"{UPLOADS_PREFIX}*")]))

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
