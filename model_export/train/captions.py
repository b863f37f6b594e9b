"""Captions from product metadata: a small template set, several texts per product.

What a catalog holds beyond the image is its metadata: the title, the product type and free
attributes (colour, material, pattern, brand ... whatever columns the catalog has beyond the known
fields). Each product gets every template whose fields it has; one is sampled per product per
training step, and the most specific is its held-out query caption. Attributes that cannot describe
an image are left out: ids, numbers, URLs, long texts; a true boolean attribute contributes its
name ("kids"). A title that only repeats the product id (the clothing dataset's "T-Shirt 4285fab0")
is left out too. The clothing dataset has a label and a kids flag only, so its captions name the
product type (and "kids"): that is what the data says, nothing is invented.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from moodboard.catalog import Product
from moodboard.query import indefinite_article, type_prompt

# name -> (template, what it needs). Order: most specific first (the primary caption).
TEMPLATES: dict[str, str] = {
    "attributes": "a photo of {a_or_an} {attributes} {type}",  # moodboard.query.indefinite_article
    "fields": "{type}, {fields}",
    "title": "{title}",
    "type": "{type_prompt}",
}
MAX_ATTRIBUTE_CHARS = 40
MAX_ATTRIBUTES = 4
_ID_LIKE = re.compile(r"(^|_)(id|ids|sku|ean|upc|gtin|url|uri|link|href)$", re.IGNORECASE)
_HEX_RUN = re.compile(r"\b[0-9a-f]{6,}\b", re.IGNORECASE)


@dataclass(frozen=True)
class ProductCaptions:
    """Every caption of one product, by template name, and its primary (held-out query) caption."""

    by_template: dict[str, str]

    @property
    def texts(self) -> frozenset[str]:
        return frozenset(self.by_template.values())

    @property
    def primary(self) -> str:
        return next(iter(self.by_template.values()))


def caption_attributes(product: Product) -> list[tuple[str, str]]:
    """(name, value) of the attributes that can describe the product's look, in catalog order."""
    kept = []
    for name, value in product.attributes.items():
        if _ID_LIKE.search(name) or value is None or value is False:
            continue
        if value is True:
            kept.append((name, name.replace("_", " ")))
            continue
        if isinstance(value, (int, float)) or not isinstance(value, str):
            continue
        text = value.strip()
        if not text or len(text) > MAX_ATTRIBUTE_CHARS or "://" in text or _HEX_RUN.search(text):
            continue
        if re.fullmatch(r"[\d.,\s-]+", text):
            continue
        kept.append((name, text.lower()))
    return kept[:MAX_ATTRIBUTES]


def informative_title(product: Product) -> str | None:
    """The title, unless it is empty, the id, or carries the id (or its first 8 characters)."""
    title = (product.title or "").strip()
    if not title or title == product.id or product.id in title or product.id[:8] in title:
        return None
    if _HEX_RUN.search(title):
        return None
    return title


def product_captions(product: Product) -> ProductCaptions:
    """The captions of one product, most specific first; duplicates collapse onto one template."""
    category = re.sub(r"[\s_]+", " ", product.category).strip().lower()
    attributes = caption_attributes(product)
    title = informative_title(product)
    values: dict[str, str] = {}
    if attributes:
        words = " ".join(v for _, v in attributes)
        values["attributes"] = TEMPLATES["attributes"].format(a_or_an=indefinite_article(words), attributes=words,
                                                              type=category)
        values["fields"] = TEMPLATES["fields"].format(
            type=category, fields=", ".join(f"{n.replace('_', ' ')}: {v}" for n, v in attributes))
    if title:
        values["title"] = TEMPLATES["title"].format(title=title)
    values["type"] = TEMPLATES["type"].format(type_prompt=type_prompt(product.category))
    by_template: dict[str, str] = {}
    for name, text in values.items():
        if text not in by_template.values():
            by_template[name] = text
    return ProductCaptions(by_template=by_template)


def describe(captions: list[ProductCaptions], products: list[Product]) -> dict[str, Any]:
    """What the manifest records about the captions: templates, attribute fields, counts, examples."""
    templates = Counter(name for c in captions for name in c.by_template)
    fields = Counter(name for p in products for name, _ in caption_attributes(p))
    distinct = {t for c in captions for t in c.texts}
    return {
        "templates": {name: TEMPLATES[name] for name in TEMPLATES if name in templates},
        "products_per_template": dict(templates),
        "attribute_fields": dict(fields),
        "title_used": templates.get("title", 0) > 0,
        "captions": sum(len(c.by_template) for c in captions),
        "distinct_captions": len(distinct),
        "per_product": "one caption sampled uniformly per product per step; the first is the held-out query",
        "examples": [list(c.by_template.values()) for c in captions[:3]],
    }
