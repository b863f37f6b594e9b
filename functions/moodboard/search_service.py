"""What the search API does, apart from HTTP: take a query, run the gist search, record it.

The routes (moodboard.search_routes) parse requests and call these functions; everything here takes
its collaborators as arguments (embedder, index, history store, image fetcher, settings), so tests
drive it with fakes. Limits are enforced before work is done: an unknown category is refused before
any image is fetched, an oversized base64 image before it is decoded, and the image bytes before
Pillow sees them (moodboard.images). A failed history write is logged and never fails a search.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from moodboard import __version__
from moodboard.api_models import (
    CategoriesResponse,
    Category,
    ImageIn,
    IndexInfo,
    ModelInfo,
    ModelsResponse,
    ProductOut,
    ResolvedImage,
    ResolvedLessLike,
    ResolvedQuery,
    ResultItem,
    SearchRequest,
    SearchResponse,
    ServedModelInfo,
    SimilarResponse,
    VersionResponse,
)
from moodboard.errors import FetchError, ImageTooLarge, InvalidQuery, MoodboardError, NotFound
from moodboard.fetch import (
    Fetched,
    FetchLimits,
    Resolver,
    default_resolver,
    fetch_image,
)
from moodboard.images import decode_image
from moodboard.observability import COUNT, MILLISECONDS, record_metric
from moodboard.regions import Region, check_region, crop_to_region
from moodboard.settings import Settings

if TYPE_CHECKING:
    from PIL import Image

    from moodboard.catalog import Product
    from moodboard.embedder import EmbedderProtocol
    from moodboard.history import HistoryStore
    from moodboard.index import Hit, ProductIndex
    from moodboard.query import QueryParams
    from moodboard.served_models import ComparedModel, ServedModels

logger = logging.getLogger(__name__)

WEIGHT_FIELDS = ("w_image", "w_type", "w_text", "w_neg")


@dataclass(frozen=True)
class ImageFetcher:
    """Fetches a shopper's image URL through the SSRF guard (moodboard.fetch), within the limits.

    `resolver` is the DNS lookup the guard checks; tests pass a stub so no real lookup happens.
    """

    limits: FetchLimits
    allow_loopback: bool = False
    resolver: Resolver = default_resolver

    @classmethod
    def from_settings(cls, settings: Settings, *, resolver: Resolver = default_resolver) -> ImageFetcher:
        """The fetcher configured for this process."""
        return cls(limits=FetchLimits.from_settings(settings), allow_loopback=settings.fetch_allow_loopback,
                   resolver=resolver)

    def __call__(self, url: str) -> Fetched:
        return fetch_image(url, limits=self.limits, resolver=self.resolver, allow_loopback=self.allow_loopback)


@dataclass(frozen=True)
class Links:
    """Absolute URLs the responses point at, built from the request's base URL. `model` is the
    fingerprint of the compared model that answered (moodboard.served_models), None for the default
    one: the product links then name it (`?model=`), so they read that model's index."""

    base_url: str
    model: str | None = None

    @property
    def categories(self) -> str:
        return f"{self.base_url.rstrip('/')}/categories"

    @property
    def models(self) -> str:
        return f"{self.base_url.rstrip('/')}/models"

    def product_image(self, product_id: str) -> str:
        url = f"{self.base_url.rstrip('/')}/products/{quote(product_id, safe='')}/image"
        return f"{url}?model={quote(self.model, safe='')}" if self.model else url


@dataclass
class QueryImage:
    """The decoded inspiration image and where it came from."""

    image: Image.Image | None = None
    source: str | None = None
    resolved_url: str | None = None
    sha256: str | None = None  # of the bytes sent (upload, base64): ties a search to a stored picture


@dataclass(frozen=True)
class PictureSpec:
    """One picture a request asks for, before anything is fetched: a URL, base64 text or uploaded
    bytes, its weight, the region to search, and its name in messages ("picture 2")."""

    source: str  # "url" | "base64" | "upload"
    value: str | bytes
    weight: float = 1.0
    box: Region | None = None
    name: str = "the picture"


def decode_base64_image(encoded: str, settings: Settings) -> bytes:
    """Base64 (optionally a data: URL) -> bytes, refusing data over the image limit before decoding."""
    payload = encoded.strip()
    if payload.startswith("data:"):
        header, _, payload = payload.partition(",")
        if ";base64" not in header:
            raise InvalidQuery("image_base64 holds a data: URL that is not base64-encoded")
    limit = 4 * -(-settings.max_image_bytes // 3)
    if len(payload) > 2 * limit:
        raise _too_large(len(payload) * 3 // 4, settings)
    payload = "".join(payload.split())
    if len(payload) > limit:
        raise _too_large(len(payload) * 3 // 4, settings)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidQuery("image_base64 is not valid base64") from exc


def _too_large(size: int, settings: Settings) -> ImageTooLarge:
    return ImageTooLarge(f"the image is about {size} bytes, over the limit of {settings.max_image_bytes} bytes",
                         details={"bytes": size, "max_bytes": settings.max_image_bytes})


def picture_specs(request: SearchRequest, upload: bytes | None) -> list[PictureSpec]:
    """The pictures a request asks for, in order, their regions checked: the moodboard `images`, or
    the one image_url / image_base64 / upload (with `box`). InvalidQuery for two single images, for
    `images` mixed with a single image, or a picture with neither or both of url and base64;
    InvalidRegion for a region outside its picture, without area or larger than it. Nothing is
    fetched or decoded here."""
    singles = [name for name, value in (("image_url", request.image_url), ("image_base64", request.image_base64),
                                        ("image", upload)) if value is not None and value != ""]
    if request.images is not None:
        if singles or request.box is not None:
            mixed = [*singles, *(["box"] if request.box is not None else [])]
            raise InvalidQuery(f"send the pictures either as `images` or as one image ({', '.join(mixed)}), not both; "
                               "each picture of `images` takes its own box", details={"fields": ["images", *mixed]})
        return [_picture_spec(picture, f"picture {number}" if len(request.images) > 1 else "the picture")
                for number, picture in enumerate(request.images, start=1)]
    if len(singles) > 1:
        raise InvalidQuery(f"send one image, not {' and '.join(singles)}", details={"fields": singles})
    if not singles:
        if request.box is not None:
            raise InvalidQuery("`box` is a region of the image, and there is no image", details={"fields": ["box"]})
        return []
    box = check_region(request.box) if request.box is not None else None
    if upload is not None:
        return [PictureSpec("upload", upload, box=box)]
    if request.image_base64:
        return [PictureSpec("base64", request.image_base64, box=box)]
    return [PictureSpec("url", request.image_url or "", box=box)]


def _picture_spec(picture: ImageIn, name: str) -> PictureSpec:
    given = [field for field in ("url", "base64") if getattr(picture, field)]
    if len(given) != 1:
        raise InvalidQuery(f"{name} needs a url or base64 bytes, {'not both' if given else 'and has neither'}",
                           details={"fields": ["url", "base64"]})
    box = check_region(picture.box, picture=name) if picture.box is not None else None
    return PictureSpec(given[0], getattr(picture, given[0]), picture.weight, box, name)


def load_picture(spec: PictureSpec, *, settings: Settings, fetcher: Callable[[str], Fetched]) -> QueryImage:
    """Fetch (a URL) or decode (base64, an upload) one picture within the limits, and cut out its
    region before the model's preprocessing sees it."""

    def decode(data: bytes) -> Image.Image:
        image = decode_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
        return crop_to_region(image, spec.box, picture=spec.name)

    if spec.source == "upload":
        assert isinstance(spec.value, bytes)
        if len(spec.value) > settings.max_image_bytes:
            raise _too_large(len(spec.value), settings)
        return QueryImage(decode(spec.value), "upload", sha256=hashlib.sha256(spec.value).hexdigest())
    assert isinstance(spec.value, str)
    if spec.source == "base64":
        data = decode_base64_image(spec.value, settings)
        return QueryImage(decode(data), "base64", sha256=hashlib.sha256(data).hexdigest())
    started = time.perf_counter()
    try:
        fetched = fetcher(spec.value)
    except FetchError as exc:
        record_metric("FetchFailures", COUNT, 1)
        logger.info("image URL fetch failed: %s %s", type(exc).__name__, exc.message)
        raise
    record_metric("FetchLatency", MILLISECONDS, (time.perf_counter() - started) * 1000)
    return QueryImage(decode(fetched.content), "url", fetched.final_url)


def load_pictures(specs: Sequence[PictureSpec], *, settings: Settings,
                  fetcher: Callable[[str], Fetched]) -> list[QueryImage]:
    """Every picture of a request, in order. The URLs of a moodboard are fetched at the same time
    (each within its own time limit), so six slow sites cost one wait, not six."""
    if sum(spec.source == "url" for spec in specs) <= 1:
        return [load_picture(spec, settings=settings, fetcher=fetcher) for spec in specs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(specs), thread_name_prefix="picture") as pool:
        futures = [pool.submit(load_picture, spec, settings=settings, fetcher=fetcher) for spec in specs]
        return [future.result() for future in futures]


def query_params(request: SearchRequest, settings: Settings, *, k: int,
                 model_near_copy: float | None = None) -> QueryParams:
    """QueryParams from the request, the server's defaults (Settings.query) filling what it left out;
    the answering model's near-copy threshold (`model_near_copy`) comes before the default one, after
    an explicit setting (QueryParams.from_defaults)."""
    from moodboard.query import QueryParams

    overrides = {name: getattr(request, name) for name in (*WEIGHT_FIELDS, "near_copy_threshold", "mmr_lambda")}
    return QueryParams.from_defaults(settings.query, model_near_copy=model_near_copy, **overrides, k=k,
                                     offset=request.offset)


def result_item(hit: Hit, links: Links) -> ResultItem:
    """A search hit as the API shows it."""
    product = hit.product
    return ResultItem(id=product.id, title=product.title, category=product.category,
                      image_url=image_url(product, links), product_url=product.product_url,
                      price=product.price, currency=product.currency, score=round(float(hit.score), 6))


def image_url(product: Product, links: Links) -> str:
    """The product's image as a browser can load it: its URL, or our thumbnail route."""
    if product.is_url:
        return product.image
    return links.product_image(product.id)


def run_search(request: SearchRequest, *, upload: bytes | None, embedder: EmbedderProtocol, index: ProductIndex,
               history: HistoryStore | None, fetcher: Callable[[str], Fetched], settings: Settings,
               links: Links) -> SearchResponse:
    """Run one gist search (one picture or a moodboard of several) and record it in the search history.

    Raises InvalidQuery (422) for no query or pictures given two ways, InvalidRegion (422) for a bad
    region, UnknownCategory (404) and NotFound (a "less like this" product) before anything is
    fetched, and the image and fetch errors of moodboard.images / moodboard.fetch.
    """
    from moodboard.query import ImagePart, resolve_query, run_query

    started = time.perf_counter()
    specs = picture_specs(request, upload)
    k = request.k or settings.query.k
    resolved = resolve_query(index, images=[ImagePart(weight=spec.weight, box=spec.box) for spec in specs],
                             category=request.category, text=request.text, negative=request.negative,
                             less_like=request.less_like or (),
                             params=query_params(request, settings, k=k, model_near_copy=embedder.near_copy_threshold),
                             categories_url=links.categories)
    pictures = load_pictures(specs, settings=settings, fetcher=fetcher)
    result = run_query(index, embedder, resolved, images=[picture.image for picture in pictures])
    images = [ResolvedImage(source=picture.source, resolved_image_url=picture.resolved_url, weight=part.weight,
                            share=round(part.share, 6), box=part.box, sha256=picture.sha256)
              for picture, part in zip(pictures, resolved.images)]
    query = ResolvedQuery(
        kind=resolved.kind, category=resolved.category, prompt=resolved.prompt, text=resolved.text,
        negative=resolved.negative, weights=resolved.weights,
        near_copy_threshold=resolved.params.near_copy_threshold, mmr_lambda=resolved.params.mmr_lambda,
        image_source=images[0].source if images else None,
        resolved_image_url=images[0].resolved_image_url if images else None, images=images,
        less_like=[ResolvedLessLike(product_id=example.product_id, weight=example.weight)
                   for example in resolved.less_like],
    )
    results = [result_item(hit, links) for hit in result.hits]
    search_id = record_search(history, query=query, k=k, offset=request.offset, result_ids=[r.id for r in results],
                              model_fingerprint=embedder.fingerprint, index_version=index.version,
                              tiny=embedder.tiny, settings=settings)
    elapsed_ms = (time.perf_counter() - started) * 1000
    record_metric("SearchLatency", MILLISECONDS, elapsed_ms)
    record_metric("ResultCount", COUNT, len(results))
    logger.info("search %s: kind=%s category=%s results=%d in %.0f ms", search_id, query.kind, query.category,
                len(results), elapsed_ms)
    return SearchResponse(
        search_id=search_id, query=query, results=results, offset=request.offset, k=k,
        has_more=result.has_more, dropped_near_copies=result.dropped_near_copies,
        model_fingerprint=embedder.fingerprint, index_version=index.version, tiny_model=embedder.tiny,
    )


def record_search(history: HistoryStore | None, *, query: ResolvedQuery, k: int, offset: int, result_ids: list[str],
                  model_fingerprint: str, index_version: str, tiny: bool, settings: Settings) -> str:
    """Write the search's history record and return its search_id. A failed write is logged and
    counted (HistoryWriteFailures); the search still answers, with the id it would have had."""
    from moodboard.history import make_history_record

    params = {"weights": query.weights, "k": k, "offset": offset, "near_copy_threshold": query.near_copy_threshold,
              "mmr_lambda": query.mmr_lambda, "text": query.text, "negative": query.negative,
              "prompt": query.prompt, "image_source": query.image_source,
              "image_sha256": query.images[0].sha256 if len(query.images) == 1 else None,
              "images": [image.model_dump(exclude_none=True) for image in query.images] if len(query.images) > 1
              or any(image.box for image in query.images) else None,
              "less_like": [example.model_dump() for example in query.less_like] or None}
    record = make_history_record(
        kind=query.kind, category=query.category, params={k_: v for k_, v in params.items() if v is not None},
        result_ids=result_ids, model_fingerprint=model_fingerprint, index_version=index_version,
        ttl_days=settings.history_ttl_days, tiny_model=tiny,
        **({"image_url": query.resolved_image_url} if query.resolved_image_url else {}),
    )
    return store_history(history, record)


def store_history(history: HistoryStore | None, record: Any) -> str:
    """Put a history record and return its search_id; a failed write is logged, never raised."""
    if history is None:
        return record.search_id
    try:
        history.put(record)
    except Exception as exc:  # noqa: BLE001 - history must never fail a search
        record_metric("HistoryWriteFailures", COUNT, 1)
        logger.warning("search history write failed for %s: %s: %s", record.search_id, type(exc).__name__, exc)
    return record.search_id


# --- the read routes ------------------------------------------------------------------------------

def list_categories(index: ProductIndex, *, hidden: Sequence[str] = ()) -> CategoriesResponse:
    """Product types with their counts, largest first, less the `hidden` ones (any case)."""
    left_out = {name.strip().casefold() for name in hidden}
    counts = {name: count for name, count in index.categories().items() if name.casefold() not in left_out}
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0].casefold()))
    return CategoriesResponse(categories=[Category(name=name, count=count) for name, count in ordered])


@dataclass(frozen=True)
class ProductScope:
    """What a product route reads: the index of the model it names, the links that keep naming that
    model, and whether it is the untrained random one (None: the default model, whose embedder a
    product route does not load)."""

    index: ProductIndex
    links: Links
    tiny: bool | None = None


def product_scope(model: str | None, index: ProductIndex, compared: ServedModels, links: Links) -> ProductScope:
    """The index a product route reads: that of the served model `model` names (ServedModels.pick, as
    a search's `model`), else the default model's `index`. UnknownModel (404) / InvalidQuery (422) as
    for a search."""
    chosen = compared.pick(model, default=index.manifest.model_fingerprint, list_url=links.models)
    if chosen is None:
        return ProductScope(index, links)
    return ProductScope(chosen.index.get(), replace(links, model=chosen.fingerprint), chosen.embedder.tiny)


def product_out(index: ProductIndex, product_id: str, links: Links) -> ProductOut:
    """One product record (NotFound when the id is not in the index)."""
    product = index.get(product_id)
    return ProductOut(id=product.id, title=product.title, category=product.category,
                      image_url=image_url(product, links), product_url=product.product_url, price=product.price,
                      currency=product.currency, attributes=dict(product.attributes))


def similar_products(index: ProductIndex, product_id: str, *, k: int, category: str | None, links: Links,
                     history: HistoryStore | None, settings: Settings, tiny: bool = False) -> SimilarResponse:
    """'More like this': the anchor product and the products nearest to it, in its own category
    unless told otherwise, recorded in the search history (kind "similar") so they can be rated."""
    from moodboard.history import make_history_record
    from moodboard.query import similar_to

    scope, hits = similar_to(index, product_id, k=k, category=category, categories_url=links.categories)
    results = [result_item(hit, links) for hit in hits]
    record = make_history_record(
        kind="similar", category=scope, params={"product_id": product_id, "k": k, "offset": 0},
        result_ids=[result.id for result in results], model_fingerprint=index.manifest.model_fingerprint,
        index_version=index.version, ttl_days=settings.history_ttl_days, tiny_model=tiny)
    return SimilarResponse(product_id=product_id, product=product_out(index, product_id, links),
                           search_id=store_history(history, record), category=scope, results=results)


def thumbnail(index: ProductIndex, product_id: str) -> tuple[str, Any]:
    """("file", path) for a product image stored in the bundle, or ("redirect", url) for a URL image."""
    from moodboard.index import thumbnail_path

    product = index.get(product_id)
    if product.is_url:
        return "redirect", product.image
    path = thumbnail_path(index.path, product_id)
    if not path.is_file():
        raise NotFound(f"no stored image for product {product_id!r}", details={"product_id": product_id})
    return "file", path


def version_info(embedder: EmbedderProtocol, index: ProductIndex, settings: Settings) -> VersionResponse:
    """Code, model and index versions and fingerprints."""
    return VersionResponse(
        code_version=settings.code_version or __version__,
        model=ModelInfo(fingerprint=embedder.fingerprint, source=embedder.source, precision=embedder.precision,
                        tiny=embedder.tiny, description=embedder.description, trained=embedder.trained),
        index=IndexInfo(version=index.version, model_fingerprint=index.manifest.model_fingerprint, count=len(index),
                        created=index.manifest.created),
    )


def list_models(embedder: EmbedderProtocol, index: ProductIndex, compared: ServedModels) -> ModelsResponse:
    """The default model with its index, then each model served next to it with its own."""
    return ModelsResponse(models=[served_model_info(embedder, index, default=True),
                                  *(served_model_info(model.embedder, _index_of(model), default=False)
                                    for model in compared)])


def _index_of(model: ComparedModel) -> ProductIndex | None:
    """A compared model's index, or None (logged) when it cannot be served: the list still answers."""
    try:
        return model.index.get()
    except MoodboardError as exc:
        logger.warning("the index of model %s cannot be served: %s", model.fingerprint, exc.message)
        return None


def served_model_info(embedder: EmbedderProtocol, index: ProductIndex | None, *, default: bool) -> ServedModelInfo:
    """A served model as GET /models lists it."""
    from moodboard.index_versions import model_label

    return ServedModelInfo(name=model_label(embedder.source, embedder.fingerprint), fingerprint=embedder.fingerprint,
                           source=embedder.source, default=default, tiny=embedder.tiny, trained=embedder.trained,
                           description=embedder.description,
                           index_version=index.version if index is not None else None,
                           count=len(index) if index is not None else None)
