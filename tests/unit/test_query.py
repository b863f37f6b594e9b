"""The gist query: blending, category filter, near-copy drop, paging, MMR, "more like this"."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from moodboard.catalog import Product
from moodboard.errors import InvalidQuery, NotFound, UnknownCategory
from moodboard.index import ProductIndex
from moodboard.query import (
    MAX_IMAGES,
    GistQuery,
    ImagePart,
    LessLike,
    QueryParams,
    gist_search,
    resolve_query,
    run_query,
    similar_to,
    type_prompt,
)
from moodboard.regions import Region
from moodboard.settings import QueryDefaults
from moodboard.vectors import Vector, l2_normalize
from PIL import Image, ImageDraw
from pydantic import ValidationError

from tests.fakes import FakeEmbedder
from tests.indexes import build_index

RED, BLUE, GREEN = (200, 40, 40), (30, 30, 200), (40, 200, 40)


class CountingEmbedder(FakeEmbedder):
    """FakeEmbedder that also records each embed_texts batch."""

    def __init__(self) -> None:
        super().__init__()
        self.text_batches: list[list[str]] = []

    def embed_texts(self, texts: Sequence[str]) -> Vector:
        self.text_batches.append(list(texts))
        return super().embed_texts(texts)


def picture(background: tuple[int, int, int], patch: tuple[int, int, int] | None = None,
            size: int = 40) -> Image.Image:
    image = Image.new("RGB", (64, 64), background)
    if patch is not None:
        ImageDraw.Draw(image).rectangle((0, 0, size, size), fill=patch)
    return image


def random_picture(rng: random.Random) -> Image.Image:
    color = lambda: tuple(rng.randint(0, 255) for _ in range(3))
    image = Image.new("RGB", (64, 64), color())
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x, y = rng.randint(0, 48), rng.randint(0, 48)
        draw.rectangle((x, y, x + rng.randint(8, 30), y + rng.randint(8, 30)), fill=color())
    return image


def product(pid: str, category: str) -> Product:
    return Product(id=pid, title=pid, category=category, image=f"/img/{pid}.jpg")


@pytest.fixture
def embedder() -> CountingEmbedder:
    return CountingEmbedder()


IndexWith = Callable[..., ProductIndex]


@pytest.fixture
def index_with(embedder: CountingEmbedder, tmp_path: Path) -> IndexWith:
    """A bundle of 12 products per category with random pictures, plus the red/blue query picture's
    relatives among the dresses: an exact copy, a recoloured near-copy and a near-but-different one;
    and the extra products and vectors given."""

    def build(extra: Sequence[Product] = (), extra_vectors: Vector | None = None) -> ProductIndex:
        rng = random.Random(0)
        products, images = [], []
        for category in ("Dress", "Lamp", "T-Shirt"):
            for i in range(12):
                products.append(product(f"{category.lower()}-{i}", category))
                images.append(random_picture(rng))
        relatives = {"dress-copy": picture(RED, BLUE), "dress-recolour": picture((190, 50, 40), (40, 30, 190)),
                     "dress-near": picture(RED, BLUE, size=30)}
        products += [product(pid, "Dress") for pid in relatives]
        vectors = embedder.embed_images(images + list(relatives.values()))
        if extra:
            vectors = np.vstack([vectors, extra_vectors])
        return build_index(tmp_path / "bundle", [*products, *extra], vectors, fingerprint=embedder.fingerprint)

    return build


@pytest.fixture
def index(index_with: IndexWith) -> ProductIndex:
    return index_with()


def image_similarity(index: ProductIndex, embedder: FakeEmbedder, image: Image.Image, pid: str) -> float:
    return float(index.vector(pid) @ embedder.embed_images([image])[0])


def test_near_copies_of_the_query_image_are_dropped_and_near_products_kept(index, embedder) -> None:
    query = picture(RED, BLUE)
    assert image_similarity(index, embedder, query, "dress-copy") > 0.999
    assert image_similarity(index, embedder, query, "dress-recolour") > 0.95
    assert 0.6 < image_similarity(index, embedder, query, "dress-near") < 0.95
    result = gist_search(index, embedder, image=query, category="Dress",
                         params=QueryParams(w_type=0.0, near_copy_threshold=0.95, k=5))
    ids = [hit.product.id for hit in result.hits]
    assert "dress-copy" not in ids and "dress-recolour" not in ids
    assert ids[0] == "dress-near"
    assert result.dropped_near_copies == 2
    assert len(ids) == 5


def test_threshold_one_keeps_the_exact_copy(index, embedder) -> None:
    result = gist_search(index, embedder, image=picture(RED, BLUE), category="Dress",
                         params=QueryParams(w_type=0.0, near_copy_threshold=1.0, k=3))
    assert result.hits[0].product.id == "dress-copy"
    assert result.hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert result.dropped_near_copies == 0


def test_search_widens_when_near_copies_crowd_the_top(index_with, embedder) -> None:
    query = picture(GREEN, BLUE)
    copies = [picture((40 + i % 5, 200 - i % 7, 40 + i % 3), BLUE) for i in range(30)]
    index = index_with([product(f"hat-copy-{i}", "Hat") for i in range(30)] + [product(f"hat-{i}", "Hat") for i in range(8)],
                       embedder.embed_images(copies + [random_picture(random.Random(i)) for i in range(8)]))
    result = gist_search(index, embedder, image=query, category="Hat",
                         params=QueryParams(w_type=0.0, k=5, offset=2))
    ids = [hit.product.id for hit in result.hits]
    assert len(ids) == 5 and all(pid.startswith("hat-") and "copy" not in pid for pid in ids)
    assert result.dropped_near_copies == 30
    assert result.has_more is True  # 8 non-copies: 2 skipped, 5 shown, 1 more


def test_pure_image_query_ranks_by_image_similarity(index, embedder) -> None:
    query = picture(RED, BLUE)
    result = gist_search(index, embedder, image=query, category="Lamp",
                         params=QueryParams(w_type=0.0, k=12))
    image_vec = embedder.embed_images([query])[0]
    expected = sorted((p.id for p in index.products() if p.id.startswith("lamp-")),
                      key=lambda pid: -float(index.vector(pid) @ image_vec))
    assert [hit.product.id for hit in result.hits] == expected
    assert [hit.score for hit in result.hits] == pytest.approx(
        [float(index.vector(pid) @ image_vec) for pid in expected], abs=1e-5)


def test_only_products_of_the_category_are_returned(index, embedder) -> None:
    result = gist_search(index, embedder, image=picture(RED, BLUE), category="T-Shirt", params=QueryParams(k=50))
    assert len(result.hits) == 12
    assert {hit.product.category for hit in result.hits} == {"T-Shirt"}
    assert result.has_more is False


def test_type_weight_pulls_results_toward_the_type_prompt(index_with, embedder) -> None:
    prompt_vec = embedder.embed_texts([type_prompt("Lamp")])
    index = index_with([product("lamp-prompt", "Lamp")], prompt_vec)
    query = picture(RED, BLUE)

    def rank(w_type: float) -> int:
        hits = gist_search(index, embedder, image=query, category="Lamp",
                           params=QueryParams(w_type=w_type, k=13)).hits
        return [hit.product.id for hit in hits].index("lamp-prompt")

    assert rank(0.0) > 3
    assert rank(5.0) == 0


def test_text_weight_pulls_results_toward_the_text(index_with, embedder) -> None:
    index = index_with([product("dress-velvet", "Dress")], embedder.embed_texts(["red velvet"]))
    query = picture(GREEN)

    def rank(w_text: float) -> int:
        hits = gist_search(index, embedder, image=query, category="Dress", text="red velvet",
                           params=QueryParams(w_type=0.0, w_text=w_text, k=16)).hits
        return [hit.product.id for hit in hits].index("dress-velvet")

    assert rank(0.0) > 3
    assert rank(3.0) == 0


def test_negative_text_pushes_matching_products_down(index_with, embedder) -> None:
    query = picture(GREEN, RED)
    image_vec = embedder.embed_images([query])[0]
    neon_vec = embedder.embed_texts(["neon"])[0]
    index = index_with([product("lamp-neon", "Lamp")], l2_normalize(image_vec + 0.6 * neon_vec)[None, :])

    def rank(w_neg: float) -> int:
        hits = gist_search(index, embedder, image=query, category="Lamp", negative="neon",
                           params=QueryParams(w_type=0.0, w_neg=w_neg, k=13)).hits
        return [hit.product.id for hit in hits].index("lamp-neon")

    assert rank(0.0) == 0
    assert rank(3.0) > 3


def test_text_embeddings_are_computed_in_one_batch(index, embedder) -> None:
    embedder.text_batches.clear()
    result = gist_search(index, embedder, image=picture(RED), category="T-Shirt", text="summer", negative="wool")
    assert embedder.text_batches == [["a photo of a t-shirt", "summer", "wool"]]
    assert embedder.image_calls >= 1
    assert result.query.kind == "image+text"
    assert result.query.prompt == "a photo of a t-shirt"


def test_resolved_reports_what_was_used(index, embedder) -> None:
    params = QueryParams(w_image=1.5, w_type=0.4, w_text=0.7, w_neg=0.2, near_copy_threshold=0.9, k=4)
    result = gist_search(index, embedder, image=picture(RED), category="Dress", params=params)
    assert result.query == GistQuery(
        kind="image", category="Dress", prompt="a photo of a dress", text=None, negative=None,
        weights={"w_image": 1.5, "w_type": 0.4, "w_text": 0.0, "w_neg": 0.0}, params=params,
        images=(ImagePart(weight=1.0, share=1.0),),
    )


def test_text_only_query_without_category_searches_everything(index_with, embedder) -> None:
    index = index_with([product("lamp-linen", "Lamp")], embedder.embed_texts(["linen"]))
    result = gist_search(index, embedder, text="linen", params=QueryParams(k=5))
    assert result.query.kind == "text" and result.query.prompt is None
    assert result.hits[0].product.id == "lamp-linen"
    assert len({hit.product.category for hit in result.hits}) >= 1


def test_category_only_query_uses_the_type_prompt(index, embedder) -> None:
    result = gist_search(index, embedder, category="Lamp", params=QueryParams(k=5))
    assert result.query.kind == "text"
    assert result.query.weights == {"w_image": 0.0, "w_type": 0.6, "w_text": 0.0, "w_neg": 0.0}
    assert len(result.hits) == 5 and {h.product.category for h in result.hits} == {"Lamp"}


def test_category_matches_case_insensitively(index, embedder) -> None:
    result = gist_search(index, embedder, image=picture(RED), category="t-shirt")
    assert result.query.category == "T-Shirt"
    assert {h.product.category for h in result.hits} == {"T-Shirt"}


def test_unknown_category_raises_with_the_known_ones_before_any_embedding(index, embedder) -> None:
    embedder.image_calls, embedder.text_calls = 0, []
    with pytest.raises(UnknownCategory) as err:
        gist_search(index, embedder, image=picture(RED), category="Spaceship")
    assert err.value.status_code == 404
    assert err.value.details == {"category": "Spaceship", "categories": ["Dress", "Lamp", "T-Shirt"]}
    assert embedder.image_calls == 0 and embedder.text_calls == []


def test_no_image_text_or_category_is_an_invalid_query(index, embedder) -> None:
    with pytest.raises(InvalidQuery, match="nothing to search for: give an image, a text or a category"):
        gist_search(index, embedder, image=None, category=None, text="  ", negative="wool")


def test_a_query_is_resolved_before_its_image_exists(index, embedder) -> None:
    """resolve_query checks the category and the parts without the image (the API fetches it only
    after), and run_query runs exactly what was resolved."""
    embedder.image_calls, embedder.text_calls = 0, []
    query = resolve_query(index, has_image=True, category=" t-shirt ", text=" summer ",
                          params=QueryParams(w_text=0.5, k=3))
    assert (query.kind, query.category, query.text, query.negative) == ("image+text", "T-Shirt", "summer", None)
    assert query.weights == {"w_image": 1.0, "w_type": 0.6, "w_text": 0.5, "w_neg": 0.0}
    assert embedder.image_calls == 0 and embedder.text_calls == []
    result = run_query(index, embedder, query, image=picture(RED))
    assert result.query is query and len(result.hits) == 3
    assert {h.product.category for h in result.hits} == {"T-Shirt"}
    with pytest.raises(ValueError, match="needs"):
        run_query(index, embedder, query)


def test_all_weights_zero_is_an_invalid_query(index, embedder) -> None:
    with pytest.raises(InvalidQuery, match="every weight"):
        gist_search(index, embedder, image=picture(RED), params=QueryParams(w_image=0.0))


def test_pages_follow_each_other(index, embedder) -> None:
    query = picture(BLUE, RED)
    whole = gist_search(index, embedder, image=query, category="Dress", params=QueryParams(k=10))
    first = gist_search(index, embedder, image=query, category="Dress", params=QueryParams(k=5))
    second = gist_search(index, embedder, image=query, category="Dress", params=QueryParams(k=5, offset=5))
    assert [h.product.id for h in first.hits + second.hits] == [h.product.id for h in whole.hits]
    assert first.has_more and second.has_more
    last = gist_search(index, embedder, image=query, category="Dress", params=QueryParams(k=10, offset=10))
    assert not last.has_more and len(last.hits) == 15 - 10 - last.dropped_near_copies


def test_mmr_diversifies_the_top(embedder, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    q = embedder.embed_texts(["gist"])[0]
    u, v = l2_normalize(rng.standard_normal((2, embedder.dim)))
    crowd = l2_normalize(q + 0.3 * u + 0.01 * rng.standard_normal((5, embedder.dim)))
    other = l2_normalize(q + 0.8 * v)[None, :]
    idx = build_index(tmp_path / "vases", [product(f"a{i}", "Vase") for i in range(5)] + [product("b", "Vase")],
                      np.vstack([crowd, other]), fingerprint=embedder.fingerprint)
    plain = gist_search(idx, embedder, text="gist", category="Vase", params=QueryParams(w_type=0.0, w_text=1.0, k=3))
    diverse = gist_search(idx, embedder, text="gist", category="Vase",
                          params=QueryParams(w_type=0.0, w_text=1.0, k=3, mmr_lambda=0.3))
    assert "b" not in [h.product.id for h in plain.hits]
    assert [h.product.id for h in diverse.hits][:2] == [plain.hits[0].product.id, "b"]
    relevant = gist_search(idx, embedder, text="gist", category="Vase",
                           params=QueryParams(w_type=0.0, w_text=1.0, k=3, mmr_lambda=1.0))
    assert [h.product.id for h in relevant.hits] == [h.product.id for h in plain.hits]


# --- a moodboard of several pictures, and "less like this" ----------------------------------------

def test_a_moodboard_blends_its_pictures_by_their_shares_of_w_image(index, embedder) -> None:
    red, blue, green = picture(RED), picture(BLUE), picture(GREEN)
    params = QueryParams(w_type=0.0, w_image=1.2, near_copy_threshold=1.0, k=5)
    embedder.image_calls = 0

    result = gist_search(index, embedder, images=[red, blue, green], image_weights=[2.0, 1.0, 1.0],
                         category="Dress", params=params)

    assert embedder.image_calls == 3  # each picture embedded once
    vectors = embedder.embed_images([red, blue, green])
    expected = l2_normalize(1.2 * (0.5 * vectors[0] + 0.25 * vectors[1] + 0.25 * vectors[2]))
    assert np.allclose(result.query_vector, expected, atol=1e-6)
    assert [(part.weight, part.share) for part in result.query.images] == [(2.0, 0.5), (1.0, 0.25), (1.0, 0.25)]
    assert result.query.weights["w_image"] == 1.2 and result.query.kind == "image"
    assert [hit.score for hit in result.hits] == pytest.approx(
        [float(index.vector(hit.product.id) @ expected) for hit in result.hits], abs=1e-5)


def test_a_heavier_picture_pulls_the_results_toward_it(index, embedder) -> None:
    red, blue = picture(RED, BLUE), picture(GREEN)
    params = QueryParams(w_type=0.0, near_copy_threshold=1.0, k=1)

    toward_red = gist_search(index, embedder, images=[red, blue], image_weights=[4.0, 0.5], category="Dress",
                             params=params)
    toward_blue = gist_search(index, embedder, images=[red, blue], image_weights=[0.5, 4.0], category="Dress",
                              params=params)

    assert toward_red.hits[0].product.id == "dress-copy"  # the red/blue picture's own copy
    assert toward_blue.hits[0].product.id != "dress-copy"


def test_one_picture_on_a_moodboard_is_the_single_picture_query(index, embedder) -> None:
    single = gist_search(index, embedder, image=picture(RED, BLUE), category="Dress", params=QueryParams(k=8))
    board = gist_search(index, embedder, images=[picture(RED, BLUE)], image_weights=[3.0], category="Dress",
                        params=QueryParams(k=8))
    assert [hit.product.id for hit in board.hits] == [hit.product.id for hit in single.hits]
    assert np.allclose(board.query_vector, single.query_vector)


def test_near_copies_of_every_picture_are_dropped(index, embedder) -> None:
    """dress-copy copies the second picture, not the first: it goes all the same."""
    first, second = picture(GREEN), picture(RED, BLUE)
    params = QueryParams(w_type=0.0, near_copy_threshold=0.95, k=20)

    only_first = gist_search(index, embedder, images=[first], category="Dress", params=params)
    both = gist_search(index, embedder, images=[first, second], image_weights=[5.0, 0.25], category="Dress",
                       params=params)

    assert "dress-copy" in [hit.product.id for hit in only_first.hits]
    ids = [hit.product.id for hit in both.hits]
    assert "dress-copy" not in ids and "dress-recolour" not in ids
    assert "dress-near" in ids
    assert both.dropped_near_copies >= 2


def test_a_moodboard_holds_at_most_six_pictures(index) -> None:
    with pytest.raises(InvalidQuery, match=f"at most {MAX_IMAGES} pictures, not 7"):
        resolve_query(index, images=[ImagePart()] * 7, category="Dress")


def test_the_resolved_query_states_each_pictures_region(index) -> None:
    box = Region(x=0.1, y=0.2, width=0.5, height=0.4)
    query = resolve_query(index, images=[ImagePart(weight=1.0, box=box), ImagePart(weight=3.0)], category="Dress")
    assert query.images == (ImagePart(weight=1.0, share=0.25, box=box), ImagePart(weight=3.0, share=0.75))


def test_less_like_this_subtracts_the_products_vector_and_leaves_it_out(index, embedder) -> None:
    query = picture(RED, BLUE)
    params = QueryParams(w_type=0.0, w_neg=0.8, near_copy_threshold=1.0, k=15)
    plain = gist_search(index, embedder, image=query, category="Dress", params=params)
    refined = gist_search(index, embedder, image=query, category="Dress", less_like=["dress-near"], params=params)

    image_vec = embedder.embed_images([query])[0]
    expected = l2_normalize(image_vec - 0.8 * index.vector("dress-near"))
    assert np.allclose(refined.query_vector, expected, atol=1e-6)
    assert refined.query.less_like == (LessLike(product_id="dress-near", weight=0.8),)
    assert refined.query.weights["w_neg"] == 0.8 and refined.query.negative is None
    assert "dress-near" in [hit.product.id for hit in plain.hits]
    assert "dress-near" not in [hit.product.id for hit in refined.hits]
    plain_rank = [hit.product.id for hit in plain.hits].index("dress-recolour")
    assert [hit.product.id for hit in refined.hits].index("dress-recolour") >= plain_rank  # its neighbour sinks


def test_less_like_examples_share_the_negative_weight(index, embedder) -> None:
    query = resolve_query(index, has_image=True, category="Dress", negative="wool",
                          less_like=["dress-1", "dress-2", "dress-1"], params=QueryParams(w_neg=0.6))
    assert query.less_like == (LessLike(product_id="dress-1", weight=0.3), LessLike(product_id="dress-2", weight=0.3))
    assert query.weights["w_neg"] == 0.6


def test_less_like_an_unknown_product_is_not_found_before_any_embedding(index, embedder) -> None:
    embedder.image_calls = 0
    with pytest.raises(NotFound):
        gist_search(index, embedder, image=picture(RED), category="Dress", less_like=["no-such-product"])
    assert embedder.image_calls == 0


def test_type_prompt() -> None:
    assert type_prompt("T-Shirt") == "a photo of a t-shirt"
    assert type_prompt("Dress") == "a photo of a dress"
    assert type_prompt("  Not_sure ") == "a photo of a not sure"
    assert type_prompt("Pants") == "a photo of pants"
    assert type_prompt("Shoes") == "a photo of shoes"
    assert type_prompt("Blouse") == "a photo of a blouse"


def test_type_prompt_takes_an_before_a_vowel_letter() -> None:
    assert type_prompt("Outwear") == "a photo of an outwear"
    assert type_prompt(" Umbrella") == "a photo of an umbrella"
    assert type_prompt("Eye_mask") == "a photo of an eye mask"
    assert type_prompt("Hat") == "a photo of a hat"  # by the letter: "a hat", and "an hour" would be missed
    assert type_prompt("Earrings") == "a photo of earrings"  # plural: no article at all


@pytest.mark.parametrize("field, value", [
    ("w_image", 5.1), ("w_type", -0.1), ("w_text", 6), ("w_neg", -1), ("near_copy_threshold", 1.01),
    ("near_copy_threshold", -0.1), ("k", 0), ("k", 101), ("offset", -1), ("offset", 1001), ("mmr_lambda", 1.5),
])
def test_query_params_bounds(field, value) -> None:
    with pytest.raises(ValidationError):
        QueryParams(**{field: value})


def test_query_params_defaults_come_from_query_defaults() -> None:
    defaults = QueryDefaults()
    assert QueryParams().w_type == defaults.w_type and QueryParams().k == defaults.k
    tuned = QueryDefaults(w_type=1.2, k=10, mmr_lambda=0.5)
    params = QueryParams.from_defaults(tuned, k=7, w_image=None)
    assert (params.w_type, params.k, params.mmr_lambda, params.w_image) == (1.2, 7, 0.5, defaults.w_image)


def test_similar_to_excludes_the_product_and_stays_in_its_category(index) -> None:
    category, hits = similar_to(index, "dress-copy", k=5)
    ids = [h.product.id for h in hits]
    assert "dress-copy" not in ids and len(ids) == 5
    assert ids[0] == "dress-recolour"
    assert category == "Dress" and {h.product.category for h in hits} == {"Dress"}
    category, lamps = similar_to(index, "dress-copy", k=3, category="lamp")
    assert category == "Lamp" and {h.product.category for h in lamps} == {"Lamp"} and len(lamps) == 3
    with pytest.raises(UnknownCategory):
        similar_to(index, "dress-copy", k=3, category="vase")


def test_similar_to_unknown_product_is_not_found(index) -> None:
    with pytest.raises(NotFound):
        similar_to(index, "nope", k=3)


def test_near_copy_threshold_defaults_to_the_setting_without_a_models_own() -> None:
    assert QueryParams.from_defaults(QueryDefaults()).near_copy_threshold == 0.95
    assert QueryParams.from_defaults(QueryDefaults(), model_near_copy=None).near_copy_threshold == 0.95


def test_a_models_own_near_copy_threshold_comes_before_the_default() -> None:
    assert QueryParams.from_defaults(QueryDefaults(), model_near_copy=0.867).near_copy_threshold == 0.867


def test_an_explicit_near_copy_setting_comes_before_the_models_own(monkeypatch: pytest.MonkeyPatch) -> None:
    set_in_code = QueryDefaults(near_copy_threshold=0.95)
    assert QueryParams.from_defaults(set_in_code, model_near_copy=0.867).near_copy_threshold == 0.95
    monkeypatch.setenv("MOODBOARD_QUERY_NEAR_COPY_THRESHOLD", "0.99")
    assert QueryParams.from_defaults(QueryDefaults(), model_near_copy=0.867).near_copy_threshold == 0.99


def test_the_requests_near_copy_threshold_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOODBOARD_QUERY_NEAR_COPY_THRESHOLD", "0.99")
    params = QueryParams.from_defaults(QueryDefaults(), model_near_copy=0.867, near_copy_threshold=0.5)
    assert params.near_copy_threshold == 0.5
