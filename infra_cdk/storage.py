"""Artifacts bucket (index and model bundles, catalog uploads), an access-log bucket, and the tables.

The table key schemas repeat functions/moodboard/tables.py on purpose: changing a key replaces a
table (and its data), so it must be a deliberate edit in both places; a test checks they agree.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra_cdk.config import StackConfig

HISTORY_RECENT_INDEX = "recent"
LOG_EXPIRY = Duration.days(90)
NONCURRENT_EXPIRY = Duration.days(30)
# A sharded load's files (loads/<job>/: shard inputs, vectors, the map's results) serve its resume;
# two weeks after a load they are of no use.
LOADS_EXPIRY = Duration.days(14)


def secure_bucket(scope: Construct, id: str, config: StackConfig, **kwargs: object) -> s3.Bucket:
    """A private bucket: public access blocked, TLS-only policy, SSE-S3, owner-enforced objects,
    kept on deletion in production and emptied and deleted otherwise."""
    removal = RemovalPolicy.RETAIN if config.is_production else RemovalPolicy.DESTROY
    options: dict[str, object] = {
        "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
        "encryption": s3.BucketEncryption.S3_MANAGED,
        "enforce_ssl": True,
        "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        "removal_policy": removal,
        "auto_delete_objects": not config.is_production,
    }
    options.update(kwargs)
    return s3.Bucket(scope, id, **options)


class Storage(Construct):
    """S3 and DynamoDB: `logs_bucket`, `artifacts_bucket`, and the four tables."""

    def __init__(self, scope: Construct, id: str, *, config: StackConfig) -> None:
        super().__init__(scope, id)
        # CloudFront standard logging writes with ACLs, so this one bucket keeps them enabled.
        self.logs_bucket = secure_bucket(
            self, "AccessLogs", config,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=LOG_EXPIRY)],
        )
        self.artifacts_bucket = secure_bucket(
            self, "Artifacts", config,
            versioned=True,
            server_access_logs_bucket=self.logs_bucket,
            server_access_logs_prefix="s3/artifacts/",
            lifecycle_rules=[s3.LifecycleRule(noncurrent_version_expiration=NONCURRENT_EXPIRY,
                                              abort_incomplete_multipart_upload_after=Duration.days(7)),
                             s3.LifecycleRule(prefix="loads/", expiration=LOADS_EXPIRY)],
        )

        self.history_table = self._table("History", config, "search_id", ttl="ttl")
        self.history_table.add_global_secondary_index(
            index_name=HISTORY_RECENT_INDEX,
            partition_key=dynamodb.Attribute(name="feed", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="created_at", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        self.evaluations_table = self._table("Evaluations", config, "search_id", sort_key="product_rater")
        self.search_urls_table = self._table("SearchUrls", config, "id")
        self.jobs_table = self._table("Jobs", config, "job_id")
        self.rounds_table = self._table("Rounds", config, "round_id")

    def _table(self, id: str, config: StackConfig, partition_key: str, *, sort_key: str | None = None,
               ttl: str | None = None) -> dynamodb.Table:
        return dynamodb.Table(
            self, id,
            partition_key=dynamodb.Attribute(name=partition_key, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=sort_key, type=dynamodb.AttributeType.STRING) if sort_key else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute=ttl,
            deletion_protection=config.is_production,
            removal_policy=RemovalPolicy.RETAIN if config.is_production else RemovalPolicy.DESTROY,
        )
