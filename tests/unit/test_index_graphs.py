"""ProductIndex category graphs: a category above the switch is searched through a graph of its own.

Small structured data (clusters on a low-dimensional subspace plus noise) with categories made of
whole clusters, so most queries lie outside the category they search: the case where the global
graph's filtered walk missed at 1M (docs/performance.md). `switch` is set low so categories of a few
hundred products get graphs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from moodboard import index as index_module
from moodboard.catalog import Product
from moodboard.errors import BundleError, UnknownCategory
from moodboard.index import DROP_SHARE, EF_CATEGORY, EF_CATEGORY_OUTSIDE, ProductIndex
from moodboard.vectors import l2_normalize

DIM = 32
FINGERPRINT = "model-graphs"
SWITCH = 300
# whole clusters per category: ~1000, ~500 (their own graphs), ~250 and ~250 (exact)
CLUSTERS = {"coats": range(0, 4), "boots": range(4, 6), "hats": range(6, 7), "scarves": range(7, 8)}


def clustered(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((DIM, 6)))
    centers = rng.standard_normal((8, 6))  # nearest-neighbour cosine ~0.96; categories overlap a little
    assign = rng.integers(0, 8, n)
    low = centers[assign] + 0.6 * rng.standard_normal((n, 6))
    return l2_normalize(low @ basis.T + 0.05 * rng.standard_normal((n, DIM))), assign


def category_of(cluster: int) -> str:
    return next(name for name, ids in CLUSTERS.items() if cluster in ids)


def product(i: int | str, category: str) -> Product:
    return Product(id=f"p{i}", title=f"Product {i}", category=category, image=f"/img/{i}.jpg")


def build(n: int = 2_000, seed: int = 0) -> tuple[ProductIndex, np.ndarray, list[str]]:
    vectors, assign = clustered(n, seed)
    categories = [category_of(int(c)) for c in assign]
    index = ProductIndex.create(DIM, FINGERPRINT, capacity=64)
    index.switch = SWITCH
    for start in range(0, n, 500):  # categories cross the switch during the upserts
        index.upsert([product(i, categories[i]) for i in range(start, min(n, start + 500))],
                     vectors[start:start + 500], [f"k{i}" for i in range(start, min(n, start + 500))])
    return index, vectors, categories


def exact_top(vectors: np.ndarray, query: np.ndarray, k: int, rows: list[int]) -> list[int]:
    scores = vectors[rows] @ query
    return [rows[i] for i in np.argsort(-scores, kind="stable")[:k]]


def rows_of(categories: list[str], name: str, gone: set[int] = frozenset()) -> list[int]:  # type: ignore[assignment]
    return [i for i, c in enumerate(categories) if c == name and i not in gone]


def queries(vectors: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = vectors[rng.choice(len(vectors), n, replace=False)]
    return l2_normalize(picked + 0.05 * rng.standard_normal(picked.shape))


class NoFilteredWalk:
    """Wraps the global hnswlib graph and fails any filtered walk of it (a fake, not a mock: it
    passes every other call through)."""

    def __init__(self, real: object) -> None:
        self.real = real

    def knn_query(self, *args: object, **kwargs: object) -> object:
        if kwargs.get("filter") is not None:
            raise AssertionError("the global graph was walked with a category filter")
        return self.real.knn_query(*args, **kwargs)

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def test_categories_above_the_switch_get_their_own_graph() -> None:
    index, _, categories = build()
    counts = index.categories()
    assert counts["coats"] > SWITCH and counts["boots"] > SWITCH
    assert counts["hats"] <= SWITCH and counts["scarves"] <= SWITCH
    assert index.category_graphs() == {"boots": counts["boots"], "coats": counts["coats"]}


def test_category_graph_search_matches_exact_for_queries_outside_the_category() -> None:
    index, vectors, categories = build()
    index._hnsw = NoFilteredWalk(index._hnsw)  # type: ignore[assignment]
    for name in ("coats", "boots", "hats"):
        rows = rows_of(categories, name)
        recalls = []
        for query in queries(vectors, 40, seed=1):
            hits = index.search(query, 10, category=name)
            truth = exact_top(vectors, query, 10, rows)
            assert {h.product.category for h in hits} == {name}
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
            assert hits[0].label == truth[0]
            recalls.append(len({h.label for h in hits} & set(truth)) / 10)
        # 1.0 in every run here; hnswlib builds with two threads, so its graph is not deterministic
        assert np.mean(recalls) >= 0.99, name


def test_category_change_moves_a_product_between_graphs() -> None:
    index, vectors, categories = build()
    moved = rows_of(categories, "coats")[5]
    index.upsert([product(moved, "boots")], vectors[moved][None, :])
    index._hnsw = NoFilteredWalk(index._hnsw)  # type: ignore[assignment]
    top = index.search(vectors[moved], 1, category="boots")[0]
    assert top.label == moved and top.score == pytest.approx(1.0, abs=1e-5)
    assert moved not in {h.label for h in index.search(vectors[moved], 50, category="coats")}
    assert index.category_graphs() == {"boots": categories.count("boots") + 1, "coats": categories.count("coats") - 1}
    assert index.label_of(f"p{moved}") == moved
    # and back again: its old node in the coats graph is revived, not a second one added
    elements = index._graphs["coats"].hnsw.element_count
    index.upsert([product(moved, "coats")], vectors[moved][None, :])
    assert index._graphs["coats"].hnsw.element_count == elements
    assert index.search(vectors[moved], 1, category="coats")[0].label == moved
    assert moved not in {h.label for h in index.search(vectors[moved], 50, category="boots")}


def test_delete_removes_a_product_from_every_graph() -> None:
    index, vectors, categories = build()
    gone = set(rows_of(categories, "coats")[:40])
    index.delete([f"p{i}" for i in gone])
    index._hnsw = NoFilteredWalk(index._hnsw)  # type: ignore[assignment]
    rows = rows_of(categories, "coats", gone)
    for label in sorted(gone)[:10]:
        for category in (None, "coats"):
            hits = index.search(vectors[label], 20, category=category)
            assert not {h.label for h in hits} & gone and len(hits) == 20
        assert [h.label for h in index.search(vectors[label], 10, category="coats")] == \
               exact_top(vectors, vectors[label], 10, rows)
    assert index.category_graphs()["coats"] == len(rows)


def test_labels_freed_in_a_category_graph_are_reused_by_new_members() -> None:
    index, vectors, categories = build()
    graph = index._graphs["coats"].hnsw
    elements = graph.element_count
    index.delete([f"p{i}" for i in rows_of(categories, "coats")[:60]])
    fresh, _ = clustered(60, seed=5)
    index.upsert([product(f"new{i}", "coats") for i in range(60)], fresh)
    assert graph.element_count == elements  # deleted slots were taken over
    for i in (0, 17, 59):
        top = index.search(fresh[i], 1, category="coats")[0]
        assert top.product.id == f"pnew{i}" and top.score == pytest.approx(1.0, abs=1e-5)
    assert index.category_graphs()["coats"] == categories.count("coats")


def test_new_products_beyond_the_graph_capacity_grow_it() -> None:
    index, vectors, _ = build()
    fresh, _ = clustered(700, seed=6)
    index.upsert([product(f"new{i}", "boots") for i in range(700)], fresh)
    index._hnsw = NoFilteredWalk(index._hnsw)  # type: ignore[assignment]
    for i in (0, 350, 699):
        assert index.search(fresh[i], 1, category="boots")[0].product.id == f"pnew{i}"


def test_a_category_graph_is_dropped_only_far_below_the_switch() -> None:
    index, vectors, categories = build()
    rows = rows_of(categories, "boots")
    keep_above = int(SWITCH * DROP_SHARE)
    index.delete([f"p{i}" for i in rows[: len(rows) - SWITCH + 1]])  # just below the switch
    assert "boots" in index.category_graphs()
    index.delete([f"p{i}" for i in rows[: len(rows) - keep_above]])  # down to drop_below: still kept
    assert index.category_graphs().get("boots") == keep_above
    index.delete([f"p{rows[-1]}"])
    assert "boots" not in index.category_graphs()
    left = rows[len(rows) - keep_above:-1]
    query = vectors[left[3]]
    assert [h.label for h in index.search(query, 10, category="boots")] == exact_top(vectors, query, 10, left)


def test_a_category_deleted_entirely_loses_its_graph() -> None:
    index, vectors, categories = build()
    index.switch = 0
    index.delete([f"p{i}" for i in rows_of(categories, "hats")])
    assert "hats" not in index.category_graphs()
    with pytest.raises(UnknownCategory):
        index.search(vectors[0], 3, category="hats")


def test_exclude_is_honoured_in_a_category_graph() -> None:
    index, vectors, categories = build()
    rows = rows_of(categories, "coats")
    query = vectors[rows[0]]
    first = index.search(query, 5, category="coats")
    assert first[0].label == rows[0]
    again = index.search(query, 5, category="coats", exclude=lambda label: label == rows[0])
    assert [h.label for h in again] == [h.label for h in index.search(query, 6, category="coats")][1:]


def test_short_category_graph_walk_falls_back_to_exact() -> None:
    index, vectors, categories = build()
    rows = rows_of(categories, "coats")
    allowed = set(rows[:15])
    query = vectors[rows[200]]
    hits = index.search(query, 10, category="coats", exclude=lambda label: label not in allowed)
    assert [h.label for h in hits] == exact_top(vectors, query, 10, sorted(allowed))


def test_save_and_load_keep_the_category_graphs(tmp_path: Path) -> None:
    index, vectors, categories = build()
    index.delete([f"p{i}" for i in rows_of(categories, "coats")[:30]])
    manifest = index.save(tmp_path / "bundle")
    data = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert data["format"] == "moodboard-index/2"
    assert data["build"]["switch"] == SWITCH and data["build"]["drop_below"] == int(SWITCH * DROP_SHARE)
    graphs = {g["category"]: g for g in data["graphs"]}
    assert set(graphs) == {"boots", "coats"}
    assert graphs["coats"]["count"] == categories.count("coats") - 30
    assert graphs["coats"]["elements"] == categories.count("coats")  # 30 deleted nodes kept in the file
    for entry in graphs.values():
        assert entry["file"].startswith("graphs/") and entry["file"] in data["sha256"]
        assert (tmp_path / "bundle" / entry["file"]).is_file()
    loaded = ProductIndex.load(tmp_path / "bundle", expected_fingerprint=FINGERPRINT)
    assert loaded.version == manifest.version
    assert loaded.switch == SWITCH  # the bundle's rule, from its manifest
    assert loaded.category_graphs() == index.category_graphs()
    loaded._hnsw = NoFilteredWalk(loaded._hnsw)  # type: ignore[assignment]
    for query in queries(vectors, 10, seed=2):
        for category in ("coats", "boots", "hats"):
            assert [h.label for h in loaded.search(query, 10, category=category)] == \
                   [h.label for h in index.search(query, 10, category=category)]
    # the loaded graphs keep working incrementally: a deleted slot is taken by a new member
    loaded._hnsw = loaded._hnsw.real  # type: ignore[attr-defined]
    fresh, _ = clustered(1, seed=8)
    loaded.upsert([product("late", "coats")], fresh)
    assert loaded._graphs["coats"].hnsw.element_count == graphs["coats"]["elements"]
    assert loaded.search(fresh[0], 1, category="coats")[0].product.id == "plate"


def write_v1_bundle(index: ProductIndex, path: Path) -> None:
    """The bundle as the reader before category graphs wrote it: format /1, no graphs/, no graph
    entries, the build parameters of then."""
    index.save(path)
    shutil.rmtree(path / "graphs", ignore_errors=True)
    data = json.loads((path / "manifest.json").read_text())
    data["format"] = "moodboard-index/1"
    del data["graphs"]
    data["build"] = {key: data["build"][key] for key in ("M", "ef_construction", "ef_search")}
    data["sha256"] = {name: digest for name, digest in data["sha256"].items() if not name.startswith("graphs/")}
    (path / "manifest.json").write_text(json.dumps(data, indent=2))


def test_a_bundle_from_before_category_graphs_loads_and_searches_with_the_filtered_walk(tmp_path: Path) -> None:
    index, vectors, categories = build()
    write_v1_bundle(index, tmp_path / "v1")
    loaded = ProductIndex.load(tmp_path / "v1", expected_fingerprint=FINGERPRINT)
    assert loaded.switch == index_module.SWITCH  # /1 manifests carry no switch: the shipped one
    assert loaded.categories() == index.categories()
    assert loaded.category_graphs() == {}  # not built at load: a cold start stays fast
    for name in ("coats", "boots", "hats"):
        rows = rows_of(categories, name)
        for query in queries(vectors, 10, seed=3):
            hits = loaded.search(query, 10, category=name)
            assert len({h.label for h in hits} & set(exact_top(vectors, query, 10, rows))) >= 9
    assert loaded.build_category_graphs() == []  # its switch is the shipped one: nothing that large


def test_a_bundle_from_before_category_graphs_gets_them_when_asked_or_changed(tmp_path: Path) -> None:
    index, vectors, categories = build()
    write_v1_bundle(index, tmp_path / "v1")
    loaded = ProductIndex.load(tmp_path / "v1")
    # a reader whose switch these categories exceed (the setter would build every graph at once)
    loaded._switch, loaded._drop_below = SWITCH, int(SWITCH * DROP_SHARE)
    assert loaded.category_graphs() == {}
    loaded.delete([f"p{rows_of(categories, 'boots')[0]}"])  # a change to boots builds its graph
    assert loaded.category_graphs() == {"boots": categories.count("boots") - 1}
    assert loaded.build_category_graphs() == ["coats"]
    loaded._hnsw = NoFilteredWalk(loaded._hnsw)  # type: ignore[assignment]
    rows = rows_of(categories, "coats")
    for query in queries(vectors, 10, seed=4):
        assert [h.label for h in loaded.search(query, 10, category="coats")] == exact_top(vectors, query, 10, rows)
    loaded.save(tmp_path / "v2")
    assert ProductIndex.load(tmp_path / "v2").category_graphs() == loaded.category_graphs()


def rehash(path: Path) -> None:
    data = json.loads((path / "manifest.json").read_text())
    data["sha256"] = {name: hashlib.sha256((path / name).read_bytes()).hexdigest() for name in data["sha256"]}
    (path / "manifest.json").write_text(json.dumps(data))


def test_a_graph_that_does_not_match_its_category_is_a_bundle_error(tmp_path: Path) -> None:
    index, _, _ = build()
    index.save(tmp_path / "bundle")
    data = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    files = {g["category"]: g["file"] for g in data["graphs"]}
    shutil.copy(tmp_path / "bundle" / files["boots"], tmp_path / "bundle" / files["coats"])  # wrong graph
    rehash(tmp_path / "bundle")
    with pytest.raises(BundleError, match="graph"):
        ProductIndex.load(tmp_path / "bundle")


def test_a_listed_graph_that_is_missing_is_a_bundle_error(tmp_path: Path) -> None:
    index, _, _ = build()
    index.save(tmp_path / "bundle")
    data = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    (tmp_path / "bundle" / data["graphs"][0]["file"]).unlink()
    with pytest.raises(BundleError, match="missing graphs/"):
        ProductIndex.load(tmp_path / "bundle", verify=False)


def test_graph_file_names_are_safe_for_any_category_name(tmp_path: Path) -> None:
    vectors, _ = clustered(40, seed=9)
    index = ProductIndex.create(DIM, FINGERPRINT)
    index.switch = 5
    names = ["../../etc", "Röcke / Kleider", "a" * 200, "Röcke _ Kleider"]
    index.upsert([product(i, names[i % 4]) for i in range(40)], vectors)
    index.save(tmp_path / "bundle")
    files = [g["file"] for g in json.loads((tmp_path / "bundle" / "manifest.json").read_text())["graphs"]]
    assert len(set(files)) == 4
    assert all((tmp_path / "bundle" / f).resolve().parent == (tmp_path / "bundle" / "graphs").resolve() for f in files)
    assert ProductIndex.load(tmp_path / "bundle").category_graphs() == {name: 10 for name in sorted(names)}


class CountingGraph(NoFilteredWalk):
    """Wraps the global hnswlib graph and records the labels it is asked to (re)insert."""

    def __init__(self, real: object) -> None:
        super().__init__(real)
        self.added: list[int] = []

    def knn_query(self, *args: object, **kwargs: object) -> object:
        return self.real.knn_query(*args, **kwargs)

    def add_items(self, vectors: np.ndarray, labels: np.ndarray, *args: object, **kwargs: object) -> None:
        self.added += [int(label) for label in labels]
        self.real.add_items(vectors, labels, *args, **kwargs)


def test_a_record_only_upsert_leaves_the_global_graph_alone() -> None:
    index, vectors, categories = build()
    graph = index._hnsw = CountingGraph(index._hnsw)  # type: ignore[assignment]
    coats = rows_of(categories, "coats")[:3]
    index.upsert([product(i, "boots") for i in coats], vectors[coats])  # new category, same vectors
    assert graph.added == []
    assert index.search(vectors[coats[0]], 1, category="boots")[0].label == coats[0]
    moved = l2_normalize(vectors[coats[1]] + 0.3 * vectors[coats[2]])
    index.upsert([product(coats[1], "boots")], moved[None, :])  # a new vector does go in
    assert graph.added == [coats[1]]
    top = index.search(moved, 1)[0]
    assert top.label == coats[1] and top.score == pytest.approx(1.0, abs=1e-5)


def test_searches_run_safely_while_products_move_between_graphs() -> None:
    import threading

    index, vectors, categories = build()
    coats = rows_of(categories, "coats")
    errors: list[BaseException] = []
    done = threading.Event()

    def search() -> None:
        try:
            while not done.is_set():
                for name in ("coats", "boots", "hats"):
                    hits = index.search(vectors[coats[0]], 10, category=name)
                    assert len(hits) == 10 and {h.product.category for h in hits} == {name}
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(20):
            batch = coats[round_ * 10:(round_ + 1) * 10]
            target = "boots" if round_ % 2 == 0 else "coats"
            index.upsert([product(i, target) for i in batch], vectors[batch])
            index.delete([f"p{batch[0]}"])
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert sum(index.categories().values()) == len(categories) - 20
    assert index.category_graphs() == {name: count for name, count in index.categories().items()
                                       if name in ("boots", "coats")}


class EfRecorder(CountingGraph):
    """Wraps a category graph and records the beam of each search."""

    def __init__(self, real: object) -> None:
        super().__init__(real)
        self.efs: list[int] = []

    def set_ef(self, ef: int) -> None:
        self.efs.append(ef)
        self.real.set_ef(ef)


def test_a_query_far_outside_the_category_is_searched_again_with_a_wide_beam() -> None:
    index, vectors, categories = build()
    graph = index._graphs["coats"].hnsw = EfRecorder(index._graphs["coats"].hnsw)  # type: ignore[assignment]
    coat, hat = rows_of(categories, "coats")[7], rows_of(categories, "hats")[7]
    inside = index.search(vectors[coat], 10, category="coats")
    assert graph.efs == [EF_CATEGORY] and inside[0].label == coat
    graph.efs.clear()
    outside = index.search(vectors[hat], 10, category="coats")
    assert graph.efs == [EF_CATEGORY, EF_CATEGORY_OUTSIDE]
    assert [h.label for h in outside] == exact_top(vectors, vectors[hat], 10, rows_of(categories, "coats"))
