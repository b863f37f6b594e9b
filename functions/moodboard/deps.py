"""FastAPI dependencies of both apps, as `Annotated` aliases in one place (style rule 3): settings,
the runtime's singletons, and the repositories and load runner the evaluation and team routes use.

Routes declare what they need (`settings: SettingsDep`, `index: IndexDep` ...); tests and
`moodboard serve` swap the providers with `app.dependency_overrides[provider] = ...`, e.g.
`app.dependency_overrides[get_embedder] = lambda: FakeEmbedder()`.

Importing this module is cheap and pulls in neither numpy nor onnxruntime (the evaluations Lambda
uses it): the heavy objects are built by moodboard.runtime on first use, and the aliases of heavy
types are typed `Any` at runtime (their real types are visible to type checkers only); the
repositories' modules are imported by their providers, so the search app never loads them.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends

from moodboard import aws
from moodboard.errors import ConfigError
from moodboard.runtime import Runtime, get_runtime
from moodboard.settings import Settings, get_settings

if TYPE_CHECKING:
    from moodboard.embedder import EmbedderProtocol
    from moodboard.evaluations import EvaluationStore
    from moodboard.history import HistoryStore
    from moodboard.index import ProductIndex
    from moodboard.index_versions import IndexVersions
    from moodboard.load_jobs import JobStore, LoadRunner
    from moodboard.rounds import RoundStore
    from moodboard.search_service import ImageFetcher
    from moodboard.search_urls import SearchUrlStore
    from moodboard.served_models import ServedModels


# The provider is `get_settings` itself (moodboard.auth uses it too): overriding it in
# `app.dependency_overrides` changes the settings of every route of an app at once.
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_runtime_dep(settings: SettingsDep) -> Runtime:
    """The container's lazily built singletons."""
    return get_runtime(settings)


RuntimeDep = Annotated[Runtime, Depends(get_runtime_dep)]


def get_embedder(runtime: RuntimeDep) -> EmbedderProtocol:
    """The embedder (loaded on first use)."""
    return runtime.embedder()


def get_index(runtime: RuntimeDep) -> ProductIndex:
    """The index to serve for this request (refreshed from S3 at most once per interval)."""
    return runtime.index()


def get_served_models(runtime: RuntimeDep) -> ServedModels:
    """The models served next to the default one, for comparison (none unless configured)."""
    return runtime.served_models()


def get_history(runtime: RuntimeDep) -> HistoryStore:
    """The search history repository (DynamoDB)."""
    return runtime.history()


def get_dynamodb(runtime: RuntimeDep) -> Any:
    """The boto3 DynamoDB client, for repositories built per request."""
    return runtime.dynamodb


def get_image_fetcher(settings: SettingsDep) -> ImageFetcher:
    """How search fetches a shopper's image URL (SSRF-guarded; tests swap in a stubbed resolver)."""
    from moodboard.search_service import ImageFetcher

    return ImageFetcher.from_settings(settings)



def get_evaluation_store(settings: SettingsDep, dynamodb: DynamoDep) -> EvaluationStore:
    """Ratings of search results (DynamoDB)."""
    from moodboard.evaluations import EvaluationStore

    return EvaluationStore(dynamodb, settings.evaluations_table)


def get_search_url_store(settings: SettingsDep, dynamodb: DynamoDep) -> SearchUrlStore:
    """The team's curated inspiration URLs (DynamoDB)."""
    from moodboard.search_urls import SearchUrlStore

    return SearchUrlStore(dynamodb, settings.search_urls_table)


def get_job_store(settings: SettingsDep, dynamodb: DynamoDep) -> JobStore:
    """Load jobs (DynamoDB)."""
    from moodboard.load_jobs import JobStore

    return JobStore(dynamodb, settings.jobs_table)


def get_round_store(settings: SettingsDep, dynamodb: DynamoDep) -> RoundStore:
    """Evaluation rounds (DynamoDB)."""
    from moodboard.rounds import RoundStore

    return RoundStore(dynamodb, settings.rounds_table)


def get_index_versions(runtime: RuntimeDep) -> IndexVersions:
    """The published index versions in the artifacts bucket."""
    from moodboard.index_versions import IndexVersions

    return IndexVersions(runtime.artifact_store())


_lambda_clients: dict[tuple[str | None, str], Any] = {}
_lambda_lock = threading.Lock()


def _lambda_client(settings: Settings) -> Any:
    """One boto3 Lambda client per endpoint per container (clients are thread-safe)."""
    key = (settings.aws_endpoint_url, settings.aws_region)
    with _lambda_lock:
        if key not in _lambda_clients:
            _lambda_clients[key] = aws.client("lambda", settings)
        return _lambda_clients[key]


def get_load_runner(settings: SettingsDep) -> LoadRunner:
    """The loader Lambda in AWS; `moodboard serve` overrides this with a ThreadLoadRunner."""
    from moodboard.load_jobs import LambdaLoadRunner

    if not settings.loader_function_name:
        raise ConfigError("no loader is configured (MOODBOARD_LOADER_FUNCTION_NAME is unset)")
    return LambdaLoadRunner(_lambda_client(settings), settings.loader_function_name)


if TYPE_CHECKING:
    EmbedderDep = Annotated[EmbedderProtocol, Depends(get_embedder)]
    HistoryDep = Annotated[HistoryStore, Depends(get_history)]
    FetcherDep = Annotated[ImageFetcher, Depends(get_image_fetcher)]
    IndexDep = Annotated[ProductIndex, Depends(get_index)]
    ServedModelsDep = Annotated[ServedModels, Depends(get_served_models)]
else:
    EmbedderDep = Annotated[Any, Depends(get_embedder)]
    HistoryDep = Annotated[Any, Depends(get_history)]
    FetcherDep = Annotated[Any, Depends(get_image_fetcher)]
    IndexDep = Annotated[Any, Depends(get_index)]
    ServedModelsDep = Annotated[Any, Depends(get_served_models)]

DynamoDep = Annotated[Any, Depends(get_dynamodb)]
EvaluationsDep = Annotated[Any, Depends(get_evaluation_store)]
SearchUrlsDep = Annotated[Any, Depends(get_search_url_store)]
JobsDep = Annotated[Any, Depends(get_job_store)]
RoundsDep = Annotated[Any, Depends(get_round_store)]
VersionsDep = Annotated[Any, Depends(get_index_versions)]
LoadRunnerDep = Annotated[Any, Depends(get_load_runner)]
