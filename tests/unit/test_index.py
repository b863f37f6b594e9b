"""The index bundle: built by IndexBuilder, read by ProductIndex (recall, category search, bundle
files and their failures, the records reader). Category graphs: test_index_graphs.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from moodboard import staging
from moodboard.catalog import Product
from moodboard.errors import BundleError, FingerprintMismatch, NotFound, UnknownCategory
from moodboard.index import IndexBuilder, ProductIndex, verify
from moodboard.index import manifest as index_manifest
from moodboard.vectors import l2_normalize

from tests.indexes import build_index

DIM = 512
N = 20_000
FINGERPRINT = "model-aaaa1111"
# Category sizes in the 20k index, all below the switch: searched exactly.
SIZES = {"tiny": 3, "exact_k": 10, "small": 500, "mid": 4_000}


def structured_vectors(n: int, dim: int, *, seed: int, clusters: int = 256, rank: int = 32,
                       spread: float = 0.5, noise: float = 0.035) -> np.ndarray:
    """Clusters on a random low-dimensional subspace plus isotropic noise, L2-normalised: the
    nearest-neighbour cosine comes out around 0.87, like real embeddings. (Isotropic random vectors
    in 512 dimensions are the worst case for any ANN index and unlike real data; see DESIGN.md.)"""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
    centers = rng.standard_normal((clusters, rank))
    low = centers[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, rank))
    return l2_normalize(low @ basis.T + noise * rng.standard_normal((n, dim)))


def product(i: int | str, category: str = "Dress", **extra: object) -> Product:
    return Product(id=f"p{i}", title=f"Product {i}", category=category, image=f"/img/{i}.jpg", **extra)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProductIndex, np.ndarray, list[str]]:
    """One 20k-vector bundle for the module (building it is the slow part)."""
    vectors = structured_vectors(N, DIM, seed=7)
    rng = np.random.default_rng(8)
    categories = ["rest"] * N
    start = 0
    for name, size in SIZES.items():
        categories[start:start + size] = [name] * size
        start += size
    categories = list(rng.permutation(categories))
    index = build_index(tmp_path_factory.mktemp("big") / "bundle", [product(i, categories[i]) for i in range(N)],
                        vectors, fingerprint=FINGERPRINT, keys=[f"key{i}" for i in range(N)])
    return index, vectors, categories


def queries_near(vectors: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = vectors[rng.choice(len(vectors), n, replace=False)]
    return l2_normalize(picked + 0.02 * rng.standard_normal(picked.shape))


def exact_top(vectors: np.ndarray, query: np.ndarray, k: int, rows: np.ndarray | None = None) -> list[int]:
    rows = np.arange(len(vectors)) if rows is None else rows
    scores = vectors[rows] @ query
    return [int(rows[i]) for i in np.argsort(-scores, kind="stable")[:k]]


def test_recall_at_10_against_exact_search_on_20k_structured_vectors(big) -> None:
    """hnswlib (M=16, ef_construction=200, ef=64) vs exact numpy on 20k structured 512-d vectors:
    clusters on a 32-d subspace plus noise (nearest-neighbour cosine ~0.87, like CLIP embeddings),
    not isotropic random vectors, on which every ANN index does badly and real data never looks like."""
    index, vectors, _ = big
    queries = queries_near(vectors, 200, seed=1)
    scores = queries @ vectors.T
    exact = np.argpartition(-scores, 10, axis=1)[:, :10]
    nn_cos = np.partition(scores, -2, axis=1)[:, -2].mean()  # [-1] is the point the query was made from
    assert 0.8 < nn_cos < 0.95  # the data is as structured as the docstring says
    recalls = [len({hit.label for hit in index.search(query, 10)} & set(truth.tolist())) / 10
               for query, truth in zip(queries, exact)]
    assert np.mean(recalls) >= 0.98


def test_search_scores_are_cosine_similarity_best_first(big) -> None:
    index, vectors, _ = big
    query = queries_near(vectors, 1, seed=2)[0]
    hits = index.search(query, 5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for hit in hits:
        assert hit.score == pytest.approx(float(vectors[hit.label] @ query), abs=1e-5)
        assert hit.product.id == f"p{hit.label}"


@pytest.mark.parametrize("category", ["small", "mid", "rest"])
def test_category_search_is_exact_and_returns_only_that_category(big, category) -> None:
    index, vectors, categories = big
    rows = np.array([i for i, c in enumerate(categories) if c == category])
    for query in queries_near(vectors, 5, seed=3):
        hits = index.search(query, 24, category=category)
        assert [h.label for h in hits] == exact_top(vectors, query, 24, rows)
        assert {hit.product.category for hit in hits} == {category}


def test_categories_count_the_products_and_none_gets_a_graph_below_the_switch(big) -> None:
    index, _, _ = big
    assert index.categories() == {"exact_k": 10, "mid": 4_000, "rest": N - 4_513, "small": 500, "tiny": 3}
    assert index.manifest.graphs == [] and index.manifest.build.switch == index_manifest.SWITCH


def test_category_holding_exactly_k_returns_k(big) -> None:
    index, vectors, _ = big
    hits = index.search(vectors[0], 10, category="exact_k")
    assert len(hits) == 10
    assert {h.product.category for h in hits} == {"exact_k"}


def test_category_holding_fewer_than_k_returns_what_it_holds(big) -> None:
    index, vectors, _ = big
    hits = index.search(vectors[0], 10, category="tiny")
    assert len(hits) == 3
    assert {h.product.category for h in hits} == {"tiny"}


def test_unknown_category_is_an_error_listing_the_known_ones(big) -> None:
    index, vectors, _ = big
    with pytest.raises(UnknownCategory, match="unknown category 'Spaceship'") as err:
        index.search(vectors[0], 5, category="Spaceship")
    assert err.value.details == {"category": "Spaceship", "categories": ["exact_k", "mid", "rest", "small", "tiny"]}


def test_resolve_category_matches_case_insensitively_or_says_where_the_list_is(big) -> None:
    index, _, _ = big
    assert index.resolve_category("mid") == "mid"
    assert index.resolve_category(" MID ") == "mid"
    with pytest.raises(UnknownCategory) as err:
        index.resolve_category("hat", categories_url="https://x.example/categories")
    assert err.value.message == "unknown category 'hat'; the list is at https://x.example/categories"
    assert err.value.details["categories_url"] == "https://x.example/categories"


def test_search_excludes_labels(big) -> None:
    index, vectors, _ = big
    first = index.search(vectors[42], 3)
    assert first[0].label == 42
    again = index.search(vectors[42], 3, exclude=lambda label: label == 42)
    assert 42 not in {h.label for h in again} and len(again) == 3


def test_ef_search_is_at_least_64_and_follows_k(big) -> None:
    index, vectors, _ = big
    assert index_manifest.EF_SEARCH >= 64
    hits = index.search(vectors[0], 100)
    assert len(hits) == 100
    assert index._hnsw.ef >= 100


def small_bundle(path: Path, n: int = 200, dim: int = 16, seed: int = 0, **kwargs: object) -> tuple[ProductIndex, np.ndarray]:
    vectors = structured_vectors(n, dim, seed=seed, clusters=8, rank=4)
    categories = ["Dress" if i % 2 else "Lamp" for i in range(n)]
    index = build_index(path, [product(i, categories[i]) for i in range(n)], vectors, fingerprint=FINGERPRINT,
                        keys=[f"k{i}" for i in range(n)], **kwargs)
    return index, vectors


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    index, vectors = small_bundle(tmp_path / "bundle", catalog_sha256="c" * 64)
    manifest = index.manifest
    assert index.path == tmp_path / "bundle" and index.version == manifest.version
    assert manifest.catalog_sha256 == "c" * 64 and manifest.model_precision == "fp32"
    assert index.categories() == {"Dress": 100, "Lamp": 100}
    assert index.get("p7") == product(7, "Dress") and index.content_key("p7") == "k7"
    assert index.label_of("p7") == 7 and np.allclose(index.vector("p7"), vectors[7], atol=1e-6)
    assert [p.id for p in index.products()] == [f"p{i}" for i in range(200)]
    with pytest.raises(NotFound):
        index.get("p200")
    data = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert data["format"] == "moodboard-index/3"
    assert data["model_fingerprint"] == FINGERPRINT and data["model_precision"] == "fp32"
    assert data["count"] == 200 and data["elements"] == 200 and data["dim"] == 16
    assert data["space"] == "cosine" and data["catalog_sha256"] == "c" * 64
    assert data["build"] == {"M": 16, "ef_construction": 200, "ef_search": index_manifest.EF_SEARCH, "ef_filtered": 256,
                             "ef_category": index_manifest.EF_CATEGORY, "ef_category_outside": index_manifest.EF_CATEGORY_OUTSIDE,
                             "outside_gap": index_manifest.OUTSIDE_GAP, "switch": index_manifest.SWITCH}
    assert data["graphs"] == []  # no category above the switch
    assert set(data["sha256"]) == {"index.bin", "products.jsonl"}  # the vectors live in index.bin only
    assert not (tmp_path / "bundle" / "vectors.npy").exists()
    assert verify(tmp_path / "bundle") == manifest


def test_the_builder_normalises_vectors_and_refuses_what_does_not_fit() -> None:
    builder = IndexBuilder(4, FINGERPRINT)
    builder.add([product(1, "Hat")], np.array([[3.0, 0, 4.0, 0]]))
    assert np.allclose(builder._vectors[0], [[0.6, 0, 0.8, 0]])
    with pytest.raises(ValueError, match="added twice: p1"):
        builder.add([product(1, "Bag")], np.eye(4)[:1])
    with pytest.raises(ValueError, match="added twice: p2"):
        builder.add([product(2, "Bag"), product(2, "Hat")], np.eye(4)[:2])
    with pytest.raises(ValueError, match="vectors of shape"):
        builder.add([product(3, "Bag")], np.eye(5)[:1])
    assert len(builder) == 1 and builder.categories() == {"Hat": 1}


def test_write_extra_files_are_hashed(tmp_path: Path) -> None:
    builder = IndexBuilder(4, FINGERPRINT)
    builder.add([product(1, "Hat")], np.eye(4)[:1])
    builder.write(tmp_path / "b", write_extra=lambda d: ((d / "thumbs").mkdir(), (d / "thumbs" / "p1.jpg").write_bytes(b"j")))
    data = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert "thumbs/p1.jpg" in data["sha256"]
    assert ProductIndex.open(tmp_path / "b").get("p1").category == "Hat"


def test_load_with_another_model_fingerprint_fails_clearly(tmp_path: Path) -> None:
    small_bundle(tmp_path / "bundle", 20)
    with pytest.raises(FingerprintMismatch) as err:
        ProductIndex.open(tmp_path / "bundle", expected_fingerprint="model-bbbb2222")
    assert FINGERPRINT in str(err.value) and "model-bbbb2222" in str(err.value)
    assert err.value.details == {"index_fingerprint": FINGERPRINT, "model_fingerprint": "model-bbbb2222"}


def test_load_missing_bundle_is_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no index bundle"):
        ProductIndex.open(tmp_path / "nothing")


def test_load_corrupt_file_is_a_bundle_error(tmp_path: Path) -> None:
    small_bundle(tmp_path / "bundle", 20)
    with (tmp_path / "bundle" / "index.bin").open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\xff\xfe")
    with pytest.raises(BundleError, match="index.bin does not match its sha256"):
        ProductIndex.open(tmp_path / "bundle")
    with pytest.raises(BundleError, match="index.bin does not match its sha256"):
        verify(tmp_path / "bundle")


def test_load_missing_file_is_a_bundle_error(tmp_path: Path) -> None:
    small_bundle(tmp_path / "bundle", 20)
    (tmp_path / "bundle" / "index.bin").unlink()
    with pytest.raises(BundleError, match="missing index.bin"):
        ProductIndex.open(tmp_path / "bundle", verify=False)


def _rewrite_manifest(bundle: Path, **changes: object) -> None:
    """Change manifest fields and re-hash the files, as a builder of that bundle would have."""
    from moodboard.integrity import sha256_file

    data = json.loads((bundle / "manifest.json").read_text())
    data.update(changes)
    data["sha256"] = {f.relative_to(bundle).as_posix(): sha256_file(f) for f in sorted(bundle.rglob("*"))
                      if f.is_file() and f.name != "manifest.json" and not f.name.startswith(".")}
    (bundle / "manifest.json").write_text(json.dumps(data))


def test_vectors_are_read_by_label_when_hnswlib_stored_them_in_another_order(tmp_path: Path) -> None:
    import hnswlib

    vectors = structured_vectors(300, 16, seed=3, clusters=8, rank=4)
    build_index(tmp_path / "bundle", [product(i, "Dress") for i in range(300)], vectors, fingerprint=FINGERPRINT)
    # The same graph with its records in reverse order (as a multi-threaded build may swap them).
    reverse = np.arange(299, -1, -1)
    graph = hnswlib.Index(space="cosine", dim=16)
    graph.init_index(max_elements=300, M=16, ef_construction=200)
    graph.add_items(vectors[reverse], reverse, num_threads=1)
    graph.save_index(str(tmp_path / "bundle" / "index.bin"))
    _rewrite_manifest(tmp_path / "bundle")

    reread = ProductIndex.open(tmp_path / "bundle", expected_fingerprint=FINGERPRINT)

    assert reread._vectors.rows is not None
    for i in (0, 1, 150, 299):
        assert np.allclose(reread.vector(f"p{i}"), vectors[i], atol=1e-6)
    assert np.allclose(reread.vectors_at([5, 7]), vectors[[5, 7]], atol=1e-6)
    assert reread.search(vectors[42], 1, category="Dress")[0].product.id == "p42"  # exact path
    assert reread.search(vectors[42], 1)[0].product.id == "p42"  # graph path


def test_index_bin_of_another_shape_is_a_bundle_error_not_wrong_vectors(tmp_path: Path) -> None:
    small_bundle(tmp_path / "bundle", 20)
    small_bundle(tmp_path / "other", 21)
    (tmp_path / "bundle" / "index.bin").write_bytes((tmp_path / "other" / "index.bin").read_bytes())
    with pytest.raises(BundleError, match="does not hold 20 vectors of 16 float32"):
        ProductIndex.open(tmp_path / "bundle", verify=False)


def test_a_bundle_of_format_2_with_vectors_npy_is_still_read(tmp_path: Path) -> None:
    vectors = structured_vectors(50, 16, seed=4, clusters=8, rank=4)
    build_index(tmp_path / "bundle", [product(i, "Lamp") for i in range(50)], vectors, fingerprint=FINGERPRINT)
    # What the /2 builder wrote: the same files plus the vectors again, in vectors.npy (here shifted,
    # to show they are the ones read).
    np.save(tmp_path / "bundle" / "vectors.npy", np.roll(vectors, 1, axis=0))
    _rewrite_manifest(tmp_path / "bundle", format="moodboard-index/2")

    index = ProductIndex.open(tmp_path / "bundle", expected_fingerprint=FINGERPRINT)

    assert index.manifest.format == "moodboard-index/2"
    assert np.allclose(index.vector("p1"), vectors[0], atol=1e-6)
    (tmp_path / "bundle" / "vectors.npy").unlink()
    with pytest.raises(BundleError, match="missing vectors.npy"):
        ProductIndex.open(tmp_path / "bundle", verify=False)


@pytest.mark.parametrize("found", ["moodboard-model/1", "moodboard-index/1"])
def test_load_foreign_manifest_is_a_bundle_error(tmp_path: Path, found: str) -> None:
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "manifest.json").write_text(json.dumps({"format": found}))
    with pytest.raises(BundleError, match=rf"not a moodboard-index manifest this reader knows \(format '{found}'"):
        ProductIndex.open(tmp_path / "bundle")


def test_unsafe_version_in_a_manifest_is_a_bundle_error(tmp_path: Path) -> None:
    small_bundle(tmp_path / "bundle", 20)
    data = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    (tmp_path / "bundle" / "manifest.json").write_text(json.dumps({**data, "version": "../../etc"}))
    with pytest.raises(BundleError, match="version: String should match pattern"):
        verify(tmp_path / "bundle")


def test_a_failed_write_leaves_the_previous_bundle_loadable(tmp_path: Path) -> None:
    first, vectors = small_bundle(tmp_path / "bundle", 20)
    builder = IndexBuilder(16, FINGERPRINT)
    builder.add([product("late", "Dress")], vectors[:1])

    def disk_full(folder: Path) -> None:
        (folder / "thumbs").mkdir()
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        builder.write(tmp_path / "bundle", write_extra=disk_full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no temp dir left behind
    loaded = ProductIndex.open(tmp_path / "bundle", expected_fingerprint=FINGERPRINT)
    assert loaded.version == first.version and "plate" not in loaded and len(loaded) == 20


def test_a_failed_rename_restores_the_previous_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, vectors = small_bundle(tmp_path / "bundle", 20)
    real_rename = staging.os.rename
    calls = []

    def rename(src, dst):  # the second rename (new bundle into place) fails
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("rename failed")
        return real_rename(src, dst)

    monkeypatch.setattr(staging.os, "rename", rename)
    builder = IndexBuilder(16, FINGERPRINT)
    builder.add([product("late", "Dress")], vectors[:1])
    with pytest.raises(OSError, match="rename failed"):
        builder.write(tmp_path / "bundle")
    monkeypatch.undo()
    assert ProductIndex.open(tmp_path / "bundle").version == first.version
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_an_empty_bundle_searches_to_nothing(tmp_path: Path) -> None:
    IndexBuilder(8, FINGERPRINT).write(tmp_path / "empty")
    index = ProductIndex.open(tmp_path / "empty")
    assert index.search(np.ones(8, np.float32), 5) == []
    assert index.categories() == {} and len(index) == 0


def saved_records(tmp_path: Path, n: int = 20) -> Path:
    small_bundle(tmp_path / "bundle", n)
    return tmp_path / "bundle" / "products.jsonl"


def edit_record(file: Path, line: int, change: dict) -> None:
    lines = file.read_text().splitlines()
    record = json.loads(lines[line - 1])
    record.update(change)
    lines[line - 1] = json.dumps({k: v for k, v in record.items() if v is not ...})
    file.write_text("\n".join(lines) + "\n")


def test_load_reads_every_record_field_label_and_content_key(tmp_path: Path) -> None:
    products = [product(3, "Lamp", price=4.5, currency="EUR", product_url="https://shop.example/3",
                        attributes={"colour": "red", "sizes": [1, 2]}), product(1, "Hat")]
    builder = IndexBuilder(4, FINGERPRINT)
    builder.add(products, np.eye(4)[:2], ["k3", None])
    builder.write(tmp_path / "bundle")
    loaded = ProductIndex.open(tmp_path / "bundle")
    assert list(loaded.products()) == products
    assert [loaded.label_of(p.id) for p in products] == [0, 1]
    assert [loaded.content_key(p.id) for p in products] == ["k3", None]
    assert loaded.get("p3").attributes == {"colour": "red", "sizes": [1, 2]}


def test_load_accepts_records_in_any_label_order(tmp_path: Path) -> None:
    file = saved_records(tmp_path)
    file.write_text("".join(reversed(file.read_text().splitlines(keepends=True))))
    loaded = ProductIndex.open(file.parent, verify=False)
    assert [p.id for p in loaded.products()] == [f"p{i}" for i in range(20)]
    assert loaded.search(loaded.vector("p5"), 1)[0].product.id == "p5"


@pytest.mark.parametrize(("change", "message"), [
    ({"price": -1}, r"line 3: price: Input should be greater than or equal to 0"),
    ({"id": ""}, r"line 3: id: String should have at least 1 character"),
    ({"label": ...}, r"line 3: label: Field required"),
    ({"label": "three"}, r"line 3: label: Input should be a valid integer"),
    ({"content_key": 7}, r"line 3: content_key: Input should be a valid string"),
    ({"label": 4}, "one label to two products"),
    ({"label": 20}, "a label outside 0..19"),
    ({"label": -1}, "a label outside 0..19"),
    ({"id": "p4"}, "an id twice"),
], ids=["negative-price", "empty-id", "no-label", "label-not-int", "key-not-str",
        "label-twice", "label-too-large", "label-negative", "id-twice"])
def test_load_invalid_or_inconsistent_record_is_a_bundle_error(tmp_path: Path, change: dict, message: str) -> None:
    """A bad record names its line; records that contradict each other say how."""
    file = saved_records(tmp_path)
    edit_record(file, 3, change)
    with pytest.raises(BundleError, match=message):
        ProductIndex.open(file.parent, verify=False)


def test_load_truncated_record_is_a_bundle_error_naming_its_line(tmp_path: Path) -> None:
    file = saved_records(tmp_path)
    lines = file.read_text().splitlines()
    lines[4] = lines[4][:30]
    file.write_text("\n".join(lines) + "\n")
    with pytest.raises(BundleError, match=r"line 5 is not a JSON record"):
        ProductIndex.open(file.parent, verify=False)


def test_load_accepts_blank_lines_between_records(tmp_path: Path) -> None:
    file = saved_records(tmp_path)
    file.write_text("\n" + file.read_text().replace("\n", "\n  \n\r\n"))
    loaded = ProductIndex.open(file.parent, verify=False)
    assert len(loaded) == 20 and loaded.content_key("p19") == "k19"


def test_load_two_records_on_one_line_is_a_bundle_error(tmp_path: Path) -> None:
    file = saved_records(tmp_path)
    lines = file.read_text().splitlines()
    file.write_text("\n".join([lines[0] + "," + lines[1], *lines[2:]]) + "\n")
    with pytest.raises(BundleError, match="line 1 is not a JSON record"):
        ProductIndex.open(file.parent, verify=False)
