"""FastAPI dependencies of both apps, as `Annotated` aliases in one place (style rule 3).

Routes declare what they need (`settings: SettingsDep`, `index: IndexDep` ...); tests and
`moodboard serve` swap the providers with `app.dependency_overrides[provider] = ...`, e.g.
`app.dependency_overrides[get_embedder] = lambda: FakeEmbedder()`.

Importing this module is cheap and pulls in neither numpy nor onnxruntime (the evaluations Lambda
uses it): the heavy objects are built by moodboard.runtime on first use, and the aliases of heavy
types are typed `Any` at runtime (their real types are visible to type checkers only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends

from moodboard.runtime import Runtime, get_runtime
from moodboard.settings import Settings, get_settings

if TYPE_CHECKING:
    from moodboard.embedder import EmbedderProtocol
    from moodboard.history import HistoryStore
    from moodboard.index import ProductIndex
    from moodboard.search_service import ImageFetcher


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


if TYPE_CHECKING:
    EmbedderDep = Annotated[EmbedderProtocol, Depends(get_embedder)]
    HistoryDep = Annotated[HistoryStore, Depends(get_history)]
    FetcherDep = Annotated[ImageFetcher, Depends(get_image_fetcher)]
    IndexDep = Annotated[ProductIndex, Depends(get_index)]
else:
    EmbedderDep = Annotated[Any, Depends(get_embedder)]
    HistoryDep = Annotated[Any, Depends(get_history)]
    FetcherDep = Annotated[Any, Depends(get_image_fetcher)]
    IndexDep = Annotated[Any, Depends(get_index)]

DynamoDep = Annotated[Any, Depends(get_dynamodb)]
