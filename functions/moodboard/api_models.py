"""Request and response models of the search API (docs/contracts.md, "HTTP API").

They document the API in OpenAPI (/docs) and validate what shoppers send; the search logic lives in
moodboard.search_service. Unknown request fields are refused, so a misspelt weight is a 422 rather
than a silently ignored parameter.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from moodboard.query import MAX_IMAGES, MAX_K, MAX_LESS_LIKE, MAX_OFFSET, MAX_WEIGHT, QueryKind
from moodboard.regions import Region
from moodboard.served_models import MIN_PREFIX

MAX_TEXT = 500
MAX_URL = 2048

ImageSource = Literal["url", "upload", "base64"]


class ImageIn(BaseModel):
    """One picture of a moodboard: a URL or base64 bytes, its weight, and the region to search."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: str | None = Field(default=None, max_length=MAX_URL,
                            description="http(s) image URL, or a page (a Pinterest pin) whose og:image is used")
    base64: str | None = Field(default=None, description="image bytes, base64 (a data: URL prefix is accepted)")
    weight: float = Field(default=1.0, gt=0, le=MAX_WEIGHT, description="its share of w_image: weight / sum")
    box: Region | None = Field(default=None, description="search only this region: fractions x, y, width, height")


class SearchRequest(BaseModel):
    """A gist search: an inspiration image (URL, base64, or a multipart upload) or a moodboard of up
    to 6 (`images`), the product type and optional text. Weights and limits left out take the
    server's defaults."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    image_url: str | None = Field(default=None, max_length=MAX_URL,
                                  description="http(s) image URL, or a page (a Pinterest pin) whose og:image is used")
    image_base64: str | None = Field(default=None, description="image bytes, base64 (a data: URL prefix is accepted)")
    box: Region | None = Field(default=None, description="a region of that one image to search: fractions "
                                                         "x, y, width, height of its size (or \"x,y,width,height\")")
    images: list[ImageIn] | None = Field(default=None, min_length=1, max_length=MAX_IMAGES,
                                         description="a moodboard: 1-6 pictures blended by their weights "
                                                     "(instead of image_url / image_base64 / an upload)")
    less_like: list[str] | None = Field(default=None, max_length=MAX_LESS_LIKE,
                                        description="ids of products to find less of: their vectors are "
                                                    "subtracted with w_neg, and they are left out")
    category: str | None = Field(default=None, max_length=200, description="product type, e.g. Dress (see /categories)")
    text: str | None = Field(default=None, max_length=MAX_TEXT, description="free text to steer the match")
    negative: str | None = Field(default=None, max_length=MAX_TEXT, description="less of this")
    k: int | None = Field(default=None, ge=1, le=MAX_K, description="results per page")
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    w_image: float | None = Field(default=None, ge=0, le=MAX_WEIGHT)
    w_type: float | None = Field(default=None, ge=0, le=MAX_WEIGHT)
    w_text: float | None = Field(default=None, ge=0, le=MAX_WEIGHT)
    w_neg: float | None = Field(default=None, ge=0, le=MAX_WEIGHT)
    near_copy_threshold: float | None = Field(default=None, ge=0, le=1,
                                              description="drop products above this cosine to the query image")
    mmr_lambda: float | None = Field(default=None, ge=0, le=1, description="diversify results (maximal marginal relevance)")
    model: str | None = Field(default=None, min_length=MIN_PREFIX, max_length=128,
                              description="the served model to answer with: its fingerprint, or a prefix of at least "
                                          f"{MIN_PREFIX} characters no other served model shares (see /models); "
                                          "default: the default model")


class ProductFields(BaseModel):
    """The product fields every API response shows."""

    id: str
    title: str
    category: str
    image_url: str | None
    product_url: str | None
    price: float | None
    currency: str | None


class ResultItem(ProductFields):
    """One product in a result list."""

    score: float


class ResolvedImage(BaseModel):
    """One picture as the search used it: where it came from, its weight and share of w_image, and
    the region searched."""

    source: ImageSource
    resolved_image_url: str | None
    weight: float
    share: float
    box: Region | None = None
    sha256: str | None = Field(default=None, description="sha256 of an uploaded or base64 picture's bytes")


class ResolvedLessLike(BaseModel):
    """A product subtracted from the query ("less like this") and its weight."""

    product_id: str
    weight: float


class ResolvedQuery(BaseModel):
    """What the search actually used, so a result list can be reproduced and rated.
    `image_source` and `resolved_image_url` are those of the first picture."""

    kind: QueryKind
    category: str | None
    prompt: str | None
    text: str | None
    negative: str | None
    weights: dict[str, float]
    near_copy_threshold: float
    mmr_lambda: float | None = None
    image_source: ImageSource | None
    resolved_image_url: str | None
    images: list[ResolvedImage] = Field(default_factory=list)
    less_like: list[ResolvedLessLike] = Field(default_factory=list)


class SearchResponse(BaseModel):
    """Results of a search plus everything needed to rate them."""

    search_id: str
    query: ResolvedQuery
    results: list[ResultItem]
    offset: int
    k: int
    has_more: bool
    dropped_near_copies: int
    model_fingerprint: str
    index_version: str
    tiny_model: bool


class Category(BaseModel):
    """A product type and how many products it holds."""

    name: str
    count: int


class CategoriesResponse(BaseModel):
    categories: list[Category]


class ProductOut(ProductFields):
    """A product record as the API shows it."""

    attributes: dict[str, Any] = Field(default_factory=dict)


class SimilarResponse(BaseModel):
    """"More like this": the anchor product, the search (recorded, so its results can be rated) and
    the products nearest to it."""

    product_id: str
    product: ProductOut
    search_id: str
    category: str | None
    results: list[ResultItem]


class ModelInfo(BaseModel):
    fingerprint: str
    source: str | None
    precision: str
    tiny: bool
    description: str | None = None  # what the model is, in one line (the manifest's description)
    trained: bool = False  # trained on a catalog by `moodboard train` (the manifest has a training record)


class IndexInfo(BaseModel):
    version: str
    model_fingerprint: str
    count: int
    created: str | None


class VersionResponse(BaseModel):
    code_version: str
    model: ModelInfo
    index: IndexInfo


class ServedModelInfo(BaseModel):
    """A model this process serves, and the index it answers from."""

    name: str  # "source @ short fingerprint"
    fingerprint: str
    source: str | None
    default: bool
    tiny: bool
    trained: bool
    description: str | None = None
    index_version: str | None  # None while its index cannot be served
    count: int | None  # products in that index


class ModelsResponse(BaseModel):
    """The default model first, then the models served next to it for comparison."""

    models: list[ServedModelInfo]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
