"""Held-out metrics (benchmarks.quality.heldout), captions from metadata, the split and the loss."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from benchmarks.quality import heldout
from moodboard.catalog import Product
from moodboard.query import type_prompt


def _product(pid: str, category: str, title: str | None = None, **attributes) -> Product:
    return Product(id=pid, title=title or pid, category=category, image=f"/x/{pid}.jpg", attributes=attributes)


@pytest.mark.parametrize(("n", "relevant", "k"), [(6, 1, 1), (6, 2, 3), (7, 3, 2), (5, 5, 1)])
def test_chance_levels_match_enumerating_every_ranking(n: int, relevant: int, k: int) -> None:
    hits, reciprocal = [], []
    for ranking in itertools.permutations(range(n)):
        first = next(i for i, item in enumerate(ranking) if item < relevant)
        hits.append(first < k)
        reciprocal.append(1 / (first + 1))
    assert heldout.chance_hit_at_k(n, relevant, k) == pytest.approx(np.mean(hits))
    assert heldout.chance_reciprocal_rank(n, relevant) == pytest.approx(np.mean(reciprocal))


def _toy() -> heldout.HeldOut:
    captions = [frozenset({"red dress", "dress"}), frozenset({"blue dress", "dress"}),
                frozenset({"red hat", "hat"}), frozenset({"blue hat", "hat"})]
    return heldout.HeldOut(ids=["d1", "d2", "h1", "h2"], categories=["dress", "dress", "hat", "hat"],
                           captions=captions, primary=["red dress", "blue dress", "red hat", "blue hat"])


AXES = {"red": [1, 0, 0, 0], "blue": [0, 1, 0, 0], "dress": [0, 0, 1, 0], "hat": [0, 0, 0, 1]}


def _embed(texts):
    out = []
    for text in texts:
        words = text.replace("a photo of a ", "").split()
        out.append(np.sum([AXES[w] for w in words if w in AXES], axis=0).astype(np.float32) + 1e-3)
    return np.asarray(out)


def test_a_perfect_space_scores_one_and_a_reversed_one_scores_below_chance() -> None:
    data = _toy()
    images = _embed(["red dress", "blue dress", "red hat", "blue hat"]) + np.asarray(
        [[0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1]])  # the type outweighs the colour
    result = heldout.summary(data, images, _embed, k=1)
    assert result["caption_to_product"]["r_at_1"] == 1.0
    assert result["caption_to_product"]["mrr"] == 1.0
    assert result["type_to_product"]["p_at_1"] == 1.0
    assert result["image_to_image"]["label_agreement"] == 1.0  # each product's nearest is its own type

    reversed_images = _embed(["blue hat", "red hat", "blue dress", "red dress"])
    worse = heldout.caption_to_product(data, reversed_images, _embed, k=1)
    assert worse["r_at_1"] == 0.0 < worse["chance"]["r_at_1"]


def test_within_type_overlap_is_one_for_the_same_space_and_drops_when_neighbours_change() -> None:
    rng = np.random.default_rng(0)
    data = heldout.HeldOut(ids=[str(i) for i in range(30)], categories=["a"] * 15 + ["b"] * 15,
                           captions=[frozenset({"x"})] * 30, primary=["x"] * 30)
    images = rng.standard_normal((30, 8))
    assert heldout.within_type_overlap(data, images, images, k=5)["overlap"] == 1.0
    assert heldout.within_type_overlap(data, images, rng.standard_normal((30, 8)), k=5)["overlap"] < 0.7


def test_split_is_by_product_seeded_stratified_and_independent_of_row_order() -> None:
    ids = [f"p{i:03d}" for i in range(100)]
    categories = ["a"] * 60 + ["b"] * 38 + ["c"] * 2
    train, held = heldout.split_products(ids, categories, fraction=0.2, seed=4)
    assert len(held) == 12 + 8 + 1 and not set(train) & set(held) and len(train) + len(held) == 100
    assert sum(categories[r] == "c" for r in held) == 1  # a type with 2 products keeps one on each side
    order = np.random.default_rng(1).permutation(100)
    _, held_shuffled = heldout.split_products([ids[i] for i in order], [categories[i] for i in order],
                                              fraction=0.2, seed=4)
    assert {ids[order[r]] for r in held_shuffled} == {ids[r] for r in held}
    _, other = heldout.split_products(ids, categories, fraction=0.2, seed=5)
    assert set(other) != set(held)


def test_paired_bootstrap_interval_covers_a_clear_difference_and_not_zero() -> None:
    a = np.zeros(200)
    b = np.r_[np.ones(150), np.zeros(50)]
    row = heldout.paired_bootstrap(a, b, seed=1)
    assert row["difference"] == pytest.approx(0.75)
    assert 0.65 < row["interval"][0] < 0.75 < row["interval"][1] < 0.85
    with pytest.raises(ValueError):
        heldout.paired_bootstrap([1.0], [1.0, 2.0])


def test_captions_use_type_title_and_look_attributes_but_not_ids_or_numbers() -> None:
    from model_export.train.captions import product_captions

    captions = product_captions(_product("sku-1", "Dress", title="Linen summer dress", colour="Red",
                                         material="linen", sender_id="124", weight=300, kids=False))
    assert captions.primary == "a photo of a red linen dress"
    assert captions.by_template == {
        "attributes": "a photo of a red linen dress",
        "fields": "dress, colour: red, material: linen",
        "title": "Linen summer dress",
        "type": "a photo of a dress",
    }


def test_captions_take_an_before_a_vowel_letter_like_the_search_prompt() -> None:
    from model_export.train.captions import product_captions

    captions = product_captions(_product("sku-2", "Outwear", title="", palette="earthy"))
    assert captions.by_template["attributes"] == "a photo of an earthy outwear"
    assert captions.by_template["type"] == "a photo of an outwear" == type_prompt("Outwear")


def test_clothing_dataset_captions_name_only_the_type_and_the_kids_flag() -> None:
    from model_export.train.captions import product_captions

    uid = "4285fab0-751a-4b74-8e9b-43af05deee22"
    adult = product_captions(_product(uid, "T-Shirt", title=f"T-Shirt {uid[:8]}", sender_id="124", kids=False))
    child = product_captions(_product(uid, "Pants", title=f"Pants {uid[:8]}", sender_id="7", kids=True))
    assert adult.by_template == {"type": "a photo of a t-shirt"}
    assert child.texts == {"a photo of a kids pants", "pants, kids: kids", "a photo of pants"}


def test_shared_captions_are_positives_in_the_contrastive_loss() -> None:
    torch = pytest.importorskip("torch")
    from model_export.train.trainer import contrastive_loss, positives

    own = [frozenset({"dress"}), frozenset({"dress"}), frozenset({"hat"})]
    mask = positives(own, ["dress", "dress", "hat"])
    assert mask.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    images = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    scale = torch.tensor(100.0)
    # Two dresses with the same caption and the same look: with shared positives that is a perfect
    # answer (the loss sits at its floor, the entropy of the targets: 2/3 ln 2); with one-hot targets
    # the same state costs as much while the floor is 0, so training would push the two apart.
    floor = 2 / 3 * np.log(2)
    assert float(contrastive_loss(images, images, scale, mask)) == pytest.approx(floor, abs=1e-4)
    assert float(contrastive_loss(images, images, scale, torch.eye(3))) == pytest.approx(floor, abs=1e-4)
    separated = torch.eye(3)
    assert float(contrastive_loss(separated, separated, scale, torch.eye(3))) < 1e-4
    assert float(contrastive_loss(separated, separated, scale, mask)) > floor + 0.1
