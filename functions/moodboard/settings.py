"""Settings, read from the environment once (prefix MOODBOARD_) and passed in.

Field names match the environment variables the CDK stack sets, e.g. MOODBOARD_ARTIFACTS_BUCKET.
Tests build their own `Settings(...)` or call `get_settings.cache_clear()`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MB = 1024 * 1024


class QueryDefaults(BaseSettings):
    """Default weights of the gist query (see DESIGN.md); every one is an API parameter too."""

    model_config = SettingsConfigDict(env_prefix="MOODBOARD_QUERY_", frozen=True)

    w_image: float = 1.0
    w_type: float = 0.6
    w_text: float = 0.5
    w_neg: float = 0.3
    near_copy_threshold: float = 0.95
    k: int = 24
    mmr_lambda: float | None = None


# At most this many models are served next to the default one (each holds its own model and index
# in memory; moodboard.served_models.ServedModels checks it too).
MAX_COMPARED = 3


class ComparedBundle(BaseModel):
    """A model served next to the default one, for comparison (moodboard.served_models): its bundle
    and the local index bundle built with it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_dir: str
    index_dir: str


class Settings(BaseSettings):
    """Everything configurable about a moodboard process."""

    model_config = SettingsConfigDict(env_prefix="MOODBOARD_", frozen=True, extra="ignore")

    stage: str = "local"
    # The deployed code version (the CDK stack sets the git revision); /version falls back to the package version.
    code_version: str | None = None
    # Model bundle: a local directory, or s3://bucket/prefix/ downloaded to cache_dir on first use.
    model_dir: str | None = None
    model_s3_uri: str | None = None
    precision: Literal["fp32", "int8"] = "fp32"
    # Index bundle: a local directory, or the CURRENT version under indexes/ in the artifacts bucket.
    index_dir: str | None = None
    artifacts_bucket: str | None = None
    index_refresh_seconds: float = 60.0
    # Models served next to the default one so the team can compare them (JSON list of {"model_dir",
    # "index_dir"} in MOODBOARD_COMPARE_MODELS; `moodboard serve --compare-model` sets it). A search
    # names one with its `model` field; see GET /models.
    compare_models: list[ComparedBundle] = Field(default_factory=list, max_length=MAX_COMPARED)
    # Retention of published index versions: the newest index_keep_versions and any younger than
    # index_keep_days are kept, and never CURRENT nor the version it replaced (moodboard.index_versions).
    index_keep_versions: int = Field(default=10, ge=2)
    index_keep_days: float = Field(default=30.0, ge=0)
    # A load removing more than this share of the served products, or any whole category, needs an
    # explicit confirmation (moodboard.catalog_diff).
    load_confirm_removed_share: float = Field(default=0.10, ge=0, le=1)
    cache_dir: Path = Path("/tmp/moodboard")

    # DynamoDB tables.
    history_table: str = "moodboard-history"
    evaluations_table: str = "moodboard-evaluations"
    search_urls_table: str = "moodboard-search-urls"
    jobs_table: str = "moodboard-jobs"
    rounds_table: str = "moodboard-rounds"
    history_ttl_days: int = 365

    # AWS endpoint override (moto server, localstack); unset means real AWS.
    aws_endpoint_url: str | None = None
    aws_region: str = "us-east-1"

    # Admin auth: locally a bearer token; in AWS API Gateway's Cognito JWT authorizer runs first.
    admin_token: SecretStr | None = None
    trust_gateway_auth: bool = False

    # Loader Lambda invoked asynchronously by POST /admin/load; unset locally (serve runs loads in a thread).
    loader_function_name: str | None = None
    # Sharded loads (moodboard.shards): products per shard, and the Step Functions state machine that
    # runs a load's shards on AWS; unset (locally) the loader runs plan, shards and reduce in process.
    load_shard_size: int = Field(default=1000, ge=1, le=20_000)
    load_state_machine_arn: str | None = None

    # Limits on what users send and what we fetch for them.
    max_body_bytes: int = 12 * MB
    max_image_bytes: int = 10 * MB
    max_image_pixels: int = 40_000_000
    # Decoded-size budget, from the header before decoding: width x height x bytes per pixel of the
    # largest buffer the decode makes. 96 MiB: a 33 MP RGB photo, whose decode peaks at about 1.3x
    # that for JPEG or PNG and 5.3x for WebP (libwebp's canvas and Pillow's copies).
    max_decoded_image_bytes: int = 96 * MB
    # Per process: at most this many images decode at once; a decode waiting longer than
    # decode_wait_seconds for a turn is refused with 503.
    max_concurrent_decodes: int = Field(default=2, ge=1)
    decode_wait_seconds: float = Field(default=5.0, ge=0)
    max_html_bytes: int = 2 * MB
    fetch_timeout_seconds: float = 8.0
    fetch_max_redirects: int = 3
    fetch_concurrency: int = 8
    # Test/demo-only switch: lets fetches reach 127.0.0.0/8 and ::1 (fixtures served locally by tests
    # and `moodboard serve`). Never set in a deployed stack; private and link-local stay blocked.
    fetch_allow_loopback: bool = False

    # Catalog archives (.zip, .tar, .tar.gz): what one may unpack to (moodboard.archives). The loader
    # Lambda has 4 GiB of /tmp for the archive, its files, the previous index and the new one.
    archive_max_bytes: int = 2048 * MB  # all members together, uncompressed
    archive_max_member_bytes: int = 256 * MB
    archive_max_members: int = 100_000
    archive_max_ratio: float = 200.0  # uncompressed bytes per byte of archive (zip bombs reach 1000+)
    # A catalog uploaded from the team page (POST /admin/catalog-uploads): S3 enforces it on the
    # presigned POST (content-length-range).
    catalog_upload_max_bytes: int = 1024 * MB

    # Load the model and the current index at import time (the search Lambda's init phase, which
    # runs before the first request) instead of on the first request.
    preload: bool = False

    # Inference.
    intra_op_threads: int | None = None
    embed_batch_size: int = 16

    # Local web stack.
    frontend_dir: Path | None = None
    # `moodboard serve`'s data folder (moodboard_local.local_data) and its named team members' token file
    # (moodboard.team): set by serve; a team token is accepted only where this is set.
    data_dir: Path | None = None
    team_file: Path | None = None
    # The clothing dataset for `moodboard serve`'s demo (default: ../shared/data/clothing-dataset from the repo).
    demo_dataset: Path | None = None
    cors_origins: list[str] = Field(default_factory=list)
    # A catalog option: product types of the served catalog that GET /categories does not offer
    # (matched case-insensitively), e.g. a dataset's labelling leftovers. A search naming one still
    # runs. JSON list in MOODBOARD_HIDDEN_CATEGORIES; `moodboard serve` hides the clothing
    # dataset's "Not sure", "Skip" and "Other" unless the variable is set.
    hidden_categories: list[str] = Field(default_factory=list)

    query: QueryDefaults = Field(default_factory=QueryDefaults)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first call."""
    return Settings()
