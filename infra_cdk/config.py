"""Deployment parameters of the moodboard stack, read once from CDK context (cdk.json or `-c key=value`).

Every field has a default that deploys a working system; `StackConfig.from_context` validates them so
a typo fails at synth, not halfway through a CloudFormation deployment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from constructs import Node

_STAGE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_MODEL_PREFIX = re.compile(r"^models/[A-Za-z0-9._-]+/$")
PRODUCTION_STAGES = frozenset({"prod", "production"})


class ConfigError(ValueError):
    """A context value the stack cannot deploy with."""


@dataclass(frozen=True)
class StackConfig:
    """What differs between deployments: stage, model location, sizes, limits and the site domain."""

    stage: str = "dev"
    # Where the search and loader Lambdas find the CLIP bundle: "" bakes artifacts/model into the
    # container image (fastest cold start); "models/<fingerprint>/" reads it from the artifacts bucket.
    model_s3_prefix: str = ""
    precision: str = "fp32"
    search_memory_mb: int = 3008
    loader_memory_mb: int = 4096
    evaluations_memory_mb: int = 512
    search_timeout_s: int = 29
    loader_timeout_s: int = 900
    evaluations_timeout_s: int = 10
    search_ephemeral_mb: int = 2048
    loader_ephemeral_mb: int = 4096
    # The dry run (POST /admin/load/dry-run) downloads a catalog archive of up to 64 MiB
    # (moodboard.catalog_diff.MAX_DRY_RUN_BYTES) and unpacks it in /tmp within the loader's own
    # limits (archive_max_bytes, 2 GiB), so that it refuses exactly what a load refuses: 3 GiB holds
    # both with room to spare (tests/infra/test_dry_run_storage.py keeps it in step with the code).
    # /tmp beyond 512 MB costs next to nothing for a function that runs in milliseconds most of the time.
    evaluations_ephemeral_mb: int = 3072
    # The loader starts one Step Functions execution per load (S3 upload or POST /admin/load); 0 leaves
    # it unreserved (new accounts with a 10-execution quota cannot reserve any).
    loader_reserved_concurrency: int = 1
    # Sharded loads (infra_cdk/loads.py): products per shard, shards per worker invocation (the Map's
    # ItemBatcher), workers at once (MaxConcurrency), and the share of shards (in %) a load may lose
    # and still publish. The worker uses loader_memory_mb, loader_timeout_s and loader_ephemeral_mb.
    load_shard_size: int = 1000
    load_shards_per_worker: int = 1
    load_max_concurrency: int = 10
    load_tolerated_failure_percent: int = 5
    load_plan_memory_mb: int = 3008
    # The reduce step holds every vector and builds the graphs: 1M products need ~8 GB (10 GB = 6 vCPUs).
    load_reduce_memory_mb: int = 10240
    load_reduce_ephemeral_mb: int = 10240
    log_retention_days: int = 30
    api_rate_limit: int = 50
    api_burst_limit: int = 100
    search_rate_limit: int = 10
    search_burst_limit: int = 20
    # A custom site domain with an ACM certificate in us-east-1 gives TLS 1.2+ (TLSv1.2_2021);
    # without them CloudFront's default *.cloudfront.net certificate allows TLS 1.0 clients.
    domain_name: str = ""
    certificate_arn: str = ""
    alarm_email: str = ""
    code_version: str = ""

    @property
    def is_production(self) -> bool:
        """Production stages keep data on stack deletion and protect tables from deletion."""
        return self.stage in PRODUCTION_STAGES

    @property
    def model_in_image(self) -> bool:
        return not self.model_s3_prefix

    @property
    def custom_domain(self) -> bool:
        return bool(self.domain_name)

    @classmethod
    def from_context(cls, node: Node) -> StackConfig:
        """Read every field from CDK context (strings from `-c` are converted to the field's type)."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = node.try_get_context(field.name)
            if raw is None:
                continue
            values[field.name] = _convert(field.name, raw, type(field.default))
        return cls(**values).validated()

    def validated(self) -> StackConfig:
        """This config, or ConfigError naming the first bad value."""
        if not _STAGE.match(self.stage):
            raise ConfigError(f"stage {self.stage!r}: lower-case letters, digits and '-', at most 20 characters")
        if self.model_s3_prefix and not _MODEL_PREFIX.match(self.model_s3_prefix):
            raise ConfigError(f"model_s3_prefix {self.model_s3_prefix!r}: expected models/<fingerprint>/")
        if self.precision not in ("fp32", "int8"):
            raise ConfigError(f"precision {self.precision!r}: fp32 or int8")
        if bool(self.domain_name) != bool(self.certificate_arn):
            raise ConfigError("domain_name and certificate_arn go together (the certificate must be in us-east-1)")
        if self.certificate_arn and ":us-east-1:" not in self.certificate_arn:
            raise ConfigError("certificate_arn: CloudFront only accepts ACM certificates from us-east-1")
        if not 128 <= self.search_memory_mb <= 10240 or not 128 <= self.loader_memory_mb <= 10240:
            raise ConfigError("Lambda memory sizes are 128..10240 MB")
        if not 1 <= self.search_timeout_s <= 29:
            raise ConfigError("search_timeout_s: 1..29 (API Gateway's HTTP integration gives up at 30 s)")
        if not 1 <= self.loader_timeout_s <= 900:
            raise ConfigError("loader_timeout_s: 1..900")
        if self.loader_reserved_concurrency < 0:
            raise ConfigError("loader_reserved_concurrency: 0 (unreserved) or more")
        if not 1 <= self.load_shard_size <= 20_000:
            raise ConfigError("load_shard_size: 1..20000 products (a shard must embed well within loader_timeout_s)")
        if not 1 <= self.load_shards_per_worker <= 100:
            raise ConfigError("load_shards_per_worker: 1..100")
        if not 1 <= self.load_max_concurrency <= 10_000:
            raise ConfigError("load_max_concurrency: 1..10000 (Distributed Map's limit)")
        if not 0 <= self.load_tolerated_failure_percent <= 100:
            raise ConfigError("load_tolerated_failure_percent: 0..100")
        if not 128 <= self.load_plan_memory_mb <= 10240 or not 128 <= self.load_reduce_memory_mb <= 10240:
            raise ConfigError("Lambda memory sizes are 128..10240 MB")
        if not 512 <= self.load_reduce_ephemeral_mb <= 10240:
            raise ConfigError("load_reduce_ephemeral_mb: 512..10240 (Lambda's /tmp)")
        if not 512 <= self.evaluations_ephemeral_mb <= 10240:
            raise ConfigError("evaluations_ephemeral_mb: 512..10240 (Lambda's /tmp)")
        return self


def _convert(name: str, raw: Any, kind: type) -> Any:
    if kind is int:
        try:
            return int(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name}: expected an integer, got {raw!r}") from exc
    return str(raw)
