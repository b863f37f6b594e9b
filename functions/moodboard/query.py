"""The gist query (DESIGN.md): blend the pictures, the product type and optional text into one
vector, search within the product type, drop near-copies of any picture, optionally diversify.

    q = normalize(w_image * sum_i s_i e(image_i) + w_type * e_text("a photo of a <type>")
                  + w_text * e_text(text) - w_neg * e_text(negative) - sum_j (w_neg / m) v(less_j))

A moodboard of several pictures blends them with their shares s_i = weight_i / sum of the weights,
so one picture is the formula of DESIGN.md unchanged and w_image keeps its meaning: the weight of
the pictures together. "Less like this" examples are catalog products whose stored vectors v are
subtracted, the m of them sharing the negative weight; they never come back as results.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from moodboard.errors import InvalidQuery
from moodboard.index import Hit, ProductIndex
from moodboard.regions import Region
from moodboard.settings import QueryDefaults
from moodboard.vectors import Vector, l2_normalize

if TYPE_CHECKING:
    from moodboard.embedder import EmbedderProtocol

logger = logging.getLogger(__name__)

PROMPT_TEMPLATE = "a photo of {article} {category}"
PLURAL_PROMPT_TEMPLATE = "a photo of {category}"
# "an" before a word starting with a vowel letter ("an outwear", "an umbrella"): a spelling rule,
# not a pronunciation one, so "an unicorn" and "a hour" are its known misses.
VOWEL_LETTERS = "aeiou"
MAX_WEIGHT = 5.0
MAX_K = 100
MAX_OFFSET = 1000
# Candidates fetched per wanted result before near-copy dropping (and the MMR pool); the search
# widens when too many candidates were dropped.
OVERFETCH = 2
OVERFETCH_EXTRA = 16
MIN_QUERY_NORM = 1e-6
# A moodboard holds at most this many pictures; a refined search at most this many examples of
# "less like this".
MAX_IMAGES = 6
MAX_LESS_LIKE = 10

QueryKind = Literal["image", "text", "image+text"]

_DEFAULTS = QueryDefaults.model_fields


def _default(name: str) -> Any:
    return _DEFAULTS[name].default


class QueryParams(BaseModel):
    """Weights, thresholds and paging of one gist search; every field is an API parameter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    w_image: float = Field(default=_default("w_image"), ge=0, le=MAX_WEIGHT)
    w_type: float = Field(default=_default("w_type"), ge=0, le=MAX_WEIGHT)
    w_text: float = Field(default=_default("w_text"), ge=0, le=MAX_WEIGHT)
    w_neg: float = Field(default=_default("w_neg"), ge=0, le=MAX_WEIGHT)
    near_copy_threshold: float = Field(default=_default("near_copy_threshold"), ge=0, le=1)
    k: int = Field(default=_default("k"), ge=1, le=MAX_K)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    mmr_lambda: float | None = Field(default=_default("mmr_lambda"), ge=0, le=1)

    @classmethod
    def from_defaults(cls, defaults: QueryDefaults, *, model_near_copy: float | None = None,
                      **overrides: Any) -> QueryParams:
        """Params with the configured defaults (Settings.query), overridden by the non-None
        values given (a request's fields). The near-copy threshold, highest first: the request's,
        one set explicitly in the settings (MOODBOARD_QUERY_NEAR_COPY_THRESHOLD), the model
        bundle's own (`model_near_copy`, ModelManifest.near_copy_threshold), the default."""
        base = {name: getattr(defaults, name) for name in QueryDefaults.model_fields if name in cls.model_fields}
        if model_near_copy is not None and "near_copy_threshold" not in defaults.model_fields_set:
            base["near_copy_threshold"] = model_near_copy
        base.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**base)


class ImagePart(BaseModel):
    """One picture of a query: its weight as given, its share of w_image (weight / sum of the
    weights), and the region of it that was searched (None: the whole picture)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight: float = Field(default=1.0, gt=0, le=MAX_WEIGHT)
    share: float = Field(default=1.0, ge=0, le=1)
    box: Region | None = None


class LessLike(BaseModel):
    """A catalog product given as an example of what not to find: its vector is subtracted with
    `weight` (its part of w_neg)."""

    model_config = ConfigDict(frozen=True)

    product_id: str
    weight: float


class GistQuery(BaseModel):
    """A search request resolved once against the index: what the gist search runs and what it
    reports (style rule 17: nothing after this parses the request again)."""

    model_config = ConfigDict(frozen=True)

    kind: QueryKind
    category: str | None  # the index's spelling
    prompt: str | None  # the product type's prompt, when there is a category
    text: str | None
    negative: str | None
    weights: dict[str, float]  # the weights used: 0 for the parts the query lacks
    params: QueryParams
    images: tuple[ImagePart, ...] = ()  # the pictures, in order, with their shares of w_image
    less_like: tuple[LessLike, ...] = ()  # products subtracted ("less like this")

    @property
    def has_image(self) -> bool:
        return self.kind != "text"


@dataclass
class GistResult:
    """A page of results, the query they answer, and how many near-copies were dropped (those
    ranked above the last result of the page)."""

    hits: list[Hit]
    query: GistQuery
    dropped_near_copies: int = 0
    has_more: bool = False
    query_vector: Vector | None = field(default=None, repr=False)


def type_prompt(category: str) -> str:
    """The text prompt for a product type: "a photo of a t-shirt" for "T-Shirt", "a photo of an outwear"
    for "Outwear" (the article by the first letter, VOWEL_LETTERS). The search and the training
    captions (model_export.train.captions) both use it, so a trained model learns the search's prompt."""
    words = re.sub(r"[\s_]+", " ", category).strip().lower()
    if words.endswith("s") and not words.endswith(("ss", "us")):
        return PLURAL_PROMPT_TEMPLATE.format(category=words)  # "a photo of pants", not "a pants"
    return PROMPT_TEMPLATE.format(article=indefinite_article(words), category=words)


def indefinite_article(phrase: str) -> str:
    """"an" before a phrase whose first letter is a vowel (VOWEL_LETTERS), else "a"."""
    phrase = phrase.strip().lower()
    return "an" if phrase and phrase[0] in VOWEL_LETTERS else "a"


def resolve_query(index: ProductIndex, *, has_image: bool = False, images: Sequence[ImagePart] | None = None,
                  category: str | None = None, text: str | None = None, negative: str | None = None,
                  less_like: Sequence[str] = (), params: QueryParams | None = None,
                  categories_url: str | None = None) -> GistQuery:
    """Resolve a request against the index, before any image is fetched or embedded: the category
    to the index's spelling (ProductIndex.resolve_category), its prompt, the pictures' shares of
    w_image (`images`, or one whole picture for `has_image`), the "less like this" products, the
    weights of the parts given. InvalidQuery without an image, a text or a category (the one check
    of an empty query) or with too many pictures or examples; UnknownCategory for a category the
    index does not hold; NotFound for a "less like this" product it does not hold."""
    params = params or QueryParams()
    parts = list(images) if images is not None else [ImagePart()] if has_image else []
    text = (text or "").strip() or None
    negative = (negative or "").strip() or None
    category = (category or "").strip() or None
    examples = list(dict.fromkeys(pid.strip() for pid in less_like if pid and pid.strip()))
    if not parts and text is None and category is None:
        raise InvalidQuery("nothing to search for: give an image, a text or a category")
    if len(parts) > MAX_IMAGES:
        raise InvalidQuery(f"a moodboard holds at most {MAX_IMAGES} pictures, not {len(parts)}",
                           details={"max_images": MAX_IMAGES})
    if len(examples) > MAX_LESS_LIKE:
        raise InvalidQuery(f"give at most {MAX_LESS_LIKE} products as \"less like this\", not {len(examples)}",
                           details={"max_less_like": MAX_LESS_LIKE})
    for product_id in examples:
        index.get(product_id)
    if category is not None:
        category = index.resolve_category(category, categories_url=categories_url)
    prompt = type_prompt(category) if category is not None else None
    total = sum(part.weight for part in parts)
    parts = [part.model_copy(update={"share": part.weight / total}) for part in parts]
    weights = {
        "w_image": params.w_image if parts else 0.0,
        "w_type": params.w_type if prompt is not None else 0.0,
        "w_text": params.w_text if text is not None else 0.0,
        "w_neg": params.w_neg if negative is not None or examples else 0.0,
    }
    less = tuple(LessLike(product_id=pid, weight=weights["w_neg"] / len(examples)) for pid in examples)
    kind = "image+text" if parts and text is not None else "image" if parts else "text"
    return GistQuery(kind=kind, category=category, prompt=prompt, text=text, negative=negative,
                     weights=weights, params=params, images=tuple(parts), less_like=less)


def gist_search(index: ProductIndex, embedder: EmbedderProtocol, *, image: Image.Image | None = None,
                images: Sequence[Image.Image] | None = None, image_weights: Sequence[float] | None = None,
                category: str | None = None, text: str | None = None, negative: str | None = None,
                less_like: Sequence[str] = (), params: QueryParams | None = None) -> GistResult:
    """Products of `category` that carry the gist of `image` (or of the moodboard `images`, blended
    by `image_weights`, equal by default) and `text`, best first: the request resolved
    (resolve_query), then run (run_query)."""
    pictures = list(images) if images is not None else [image] if image is not None else []
    weights = list(image_weights) if image_weights is not None else [1.0] * len(pictures)
    if len(weights) != len(pictures):
        raise ValueError(f"{len(weights)} weights for {len(pictures)} pictures")
    query = resolve_query(index, images=[ImagePart(weight=weight) for weight in weights], category=category,
                          text=text, negative=negative, less_like=less_like, params=params)
    return run_query(index, embedder, query, images=pictures)


def run_query(index: ProductIndex, embedder: EmbedderProtocol, query: GistQuery, *,
              image: Image.Image | None = None, images: Sequence[Image.Image] | None = None) -> GistResult:
    """Run a resolved query: blend the embeddings with its weights (the pictures in one embed_images
    batch, the text parts in one embed_texts batch), subtract the "less like this" products, search
    within its category without them, drop products whose vector is more similar than
    near_copy_threshold to any of the pictures, apply MMR when mmr_lambda is set, and return
    params.k hits after params.offset. InvalidQuery when every weight of the parts given is 0."""
    pictures = list(images) if images is not None else [image] if image is not None else []
    if len(pictures) != len(query.images):
        raise ValueError(f"a {query.kind} query {'needs' if query.has_image else 'takes no'} image"
                         f" ({len(query.images)} resolved, {len(pictures)} given)")
    params, weights = query.params, query.weights
    texts = {name: value for name, value in (("w_type", query.prompt), ("w_text", query.text),
                                             ("w_neg", query.negative)) if value is not None and weights[name] > 0}
    image_vecs = l2_normalize(embedder.embed_images(pictures)) if pictures else None
    text_vecs = dict(zip(texts, l2_normalize(embedder.embed_texts(list(texts.values()))))) if texts else {}

    vector = np.zeros(embedder.dim, np.float32)
    if image_vecs is not None:
        shares = np.asarray([part.share for part in query.images], np.float32)
        vector += weights["w_image"] * (shares @ image_vecs)
    for name, vec in text_vecs.items():
        vector += (-1.0 if name == "w_neg" else 1.0) * weights[name] * vec
    for example in query.less_like:
        vector -= example.weight * index.vector(example.product_id)
    if float(np.linalg.norm(vector)) < MIN_QUERY_NORM:
        raise InvalidQuery("the query is empty: every weight of the parts given is 0",
                           details={"weights": weights})
    vector = l2_normalize(vector)

    need = params.offset + params.k
    pool_size = need + 1 if params.mmr_lambda is None else max(need + 1, OVERFETCH * need)
    left_out = {index.label_of(example.product_id) for example in query.less_like}
    kept, dropped = _candidates(index, vector, image_vecs, query.category, pool_size, params.near_copy_threshold,
                                left_out)
    if params.mmr_lambda is not None:
        kept = _mmr(index, vector, kept, need + 1, params.mmr_lambda)
    page = kept[params.offset:need]
    logger.debug("gist search %s: %d hits, %d near-copies dropped", query, len(page), dropped)
    return GistResult(hits=page, query=query, dropped_near_copies=dropped, has_more=len(kept) > need,
                      query_vector=vector)


def _candidates(index: ProductIndex, query: Vector, image_vecs: Vector | None, category: str | None,
                want: int, threshold: float, left_out: set[int] = frozenset()) -> tuple[list[Hit], int]:
    """The first `want` search hits that are not near-copies of any of the pictures (rows of
    image_vecs) nor `left_out` labels, and how many near-copies ranked above the last of them.
    Fetches more when near-copies crowd the top."""
    fetch = want * OVERFETCH + OVERFETCH_EXTRA if image_vecs is not None else want
    exclude = (lambda label: label in left_out) if left_out else None
    while True:
        hits = index.search(query, fetch, category=category, exclude=exclude)
        exhausted = len(hits) < fetch
        if image_vecs is None:
            return hits[:want], 0
        if hits:
            similarity = (index.vectors_at([hit.label for hit in hits]) @ image_vecs.T).max(axis=1)
        else:
            similarity = np.zeros(0)
        kept: list[Hit] = []
        dropped = 0
        for hit, sim in zip(hits, similarity):
            if sim > threshold:
                dropped += 1
                continue
            kept.append(hit)
            if len(kept) == want:
                return kept, dropped
        if exhausted:
            return kept, dropped
        fetch *= 4


def _mmr(index: ProductIndex, query: Vector, hits: list[Hit], n: int, lam: float) -> list[Hit]:
    """Maximal marginal relevance: greedily pick the hit maximising
    lam * sim(query, hit) - (1 - lam) * max sim(hit, already picked)."""
    if len(hits) <= 1 or lam >= 1.0:
        return hits[:n]
    vectors = index.vectors_at([hit.label for hit in hits])
    relevance = vectors @ query
    redundancy = np.full(len(hits), -np.inf, dtype=np.float32)
    available = np.ones(len(hits), dtype=bool)
    order: list[int] = []
    for _ in range(min(n, len(hits))):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        score = np.where(available, lam * relevance - (1.0 - lam) * penalty, -np.inf)
        best = int(np.argmax(score))
        order.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, vectors @ vectors[best])
    return [hits[i] for i in order]


def similar_to(index: ProductIndex, product_id: str, *, k: int = 12, category: str | None = None,
               categories_url: str | None = None) -> tuple[str, list[Hit]]:
    """"More like this": the category searched and the k products nearest to a product's own vector
    in it (the product's own category unless another is given), never the product itself. NotFound
    for an unknown id, UnknownCategory for an unknown category."""
    product = index.get(product_id)
    own = index.label_of(product_id)
    target = index.resolve_category(category, categories_url=categories_url) if category else product.category
    return target, index.search(index.vector(product_id), k, category=target, exclude=lambda label: label == own)
