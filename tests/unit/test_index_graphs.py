"""Category graphs: a category above the builder's switch is searched through a graph of its own.

Small structured data (clusters on a low-dimensional subspace plus noise) with categories made of
whole clusters, so most queries lie outside the category they search: the case where the global
graph's filtered walk missed at 1M (docs/performance.md). The switch is set low so categories of a
few hundred products get graphs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from moodboard.catalog import Product
from moodboard.errors import BundleError
from moodboard.index import IndexBuilder, ProductIndex
from moodboard.index.manifest import EF_CATEGORY, EF_CATEGORY_OUTSIDE
from moodboard.vectors import l2_normalize

from tests.indexes import build_index

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


def build(path: Path, n: int = 2_000, seed: int = 0) -> tuple[ProductIndex, np.ndarray, list[str]]:
    """A bundle of n products in the four categories, added in chunks: the categories cross the
    switch only as the last chunks come in."""
    vectors, assign = clustered(n, seed)
    categories = [category_of(int(c)) for c in assign]
    builder = IndexBuilder(DIM, FINGERPRINT, switch=SWITCH)
    for start in range(0, n, 500):
        builder.add([product(i, categories[i]) for i in range(start, min(n, start + 500))],
                    vectors[start:start + 500], [f"k{i}" for i in range(start, min(n, start + 500))])
    builder.write(path)
    return ProductIndex.open(path, expected_fingerprint=FINGERPRINT), vectors, categories


def exact_top(vectors: np.ndarray, query: np.ndarray, k: int, rows: list[int]) -> list[int]:
    scores = vectors[rows] @ query
    return [rows[i] for i in np.argsort(-scores, kind="stable")[:k]]


def rows_of(categories: list[str], name: str) -> list[int]:
    return [i for i, c in enumerate(categories) if c == name]


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


class NoWalk(NoFilteredWalk):
    """Wraps the global hnswlib graph and fails any walk of it."""

    def knn_query(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("the global graph was walked")


def test_categories_above_the_switch_get_their_own_graph(tmp_path: Path) -> None:
    index, _, _ = build(tmp_path / "bundle")
    counts = index.categories()
    assert counts["coats"] > SWITCH and counts["boots"] > SWITCH
    assert counts["hats"] <= SWITCH and counts["scarves"] <= SWITCH
    graphs = {entry.category: (entry.count, entry.elements) for entry in index.manifest.graphs}
    assert graphs == {"boots": (counts["boots"],) * 2, "coats": (counts["coats"],) * 2}
    assert index.manifest.build.switch == SWITCH


def test_a_category_of_exactly_the_switch_is_searched_exactly(tmp_path: Path) -> None:
    vectors, _ = clustered(SWITCH + 1, seed=3)
    products = [product(i, "hats") for i in range(SWITCH)] + [product(SWITCH, "bags")]
    index = build_index(tmp_path / "bundle", products, vectors, fingerprint=FINGERPRINT, switch=SWITCH)
    assert index.manifest.graphs == []
    index._hnsw = NoWalk(index._hnsw)  # type: ignore[assignment]
    assert [h.label for h in index.search(vectors[5], 10, category="hats")] == \
           exact_top(vectors, vectors[5], 10, list(range(SWITCH)))


def test_category_graph_search_matches_exact_for_queries_outside_the_category(tmp_path: Path) -> None:
    index, vectors, categories = build(tmp_path / "bundle")
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


def test_exclude_is_honoured_in_a_category_graph(tmp_path: Path) -> None:
    index, vectors, categories = build(tmp_path / "bundle")
    rows = rows_of(categories, "coats")
    query = vectors[rows[0]]
    first = index.search(query, 5, category="coats")
    assert first[0].label == rows[0]
    again = index.search(query, 5, category="coats", exclude=lambda label: label == rows[0])
    assert [h.label for h in again] == [h.label for h in index.search(query, 6, category="coats")][1:]


def test_short_category_graph_walk_falls_back_to_exact(tmp_path: Path) -> None:
    index, vectors, categories = build(tmp_path / "bundle")
    rows = rows_of(categories, "coats")
    allowed = set(rows[:15])
    query = vectors[rows[200]]
    hits = index.search(query, 10, category="coats", exclude=lambda label: label not in allowed)
    assert [h.label for h in hits] == exact_top(vectors, query, 10, sorted(allowed))


def test_the_category_graphs_are_bundle_files_listed_in_the_manifest(tmp_path: Path) -> None:
    build(tmp_path / "bundle")
    data = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert data["format"] == "moodboard-index/3" and data["build"]["switch"] == SWITCH
    assert {g["category"] for g in data["graphs"]} == {"boots", "coats"}
    for entry in data["graphs"]:
        assert entry["file"].startswith("graphs/") and entry["file"] in data["sha256"]
        assert (tmp_path / "bundle" / entry["file"]).is_file()


def rehash(path: Path) -> None:
    data = json.loads((path / "manifest.json").read_text())
    data["sha256"] = {name: hashlib.sha256((path / name).read_bytes()).hexdigest() for name in data["sha256"]}
    (path / "manifest.json").write_text(json.dumps(data))


def test_a_graph_that_does_not_match_its_category_is_a_bundle_error(tmp_path: Path) -> None:
    build(tmp_path / "bundle")
    data = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    files = {g["category"]: g["file"] for g in data["graphs"]}
    shutil.copy(tmp_path / "bundle" / files["boots"], tmp_path / "bundle" / files["coats"])  # wrong graph
    rehash(tmp_path / "bundle")
    with pytest.raises(BundleError, match="graph"):
        ProductIndex.open(tmp_path / "bundle")


def test_a_listed_graph_that_is_missing_is_a_bundle_error(tmp_path: Path) -> None:
    build(tmp_path / "bundle")
    data = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    (tmp_path / "bundle" / data["graphs"][0]["file"]).unlink()
    with pytest.raises(BundleError, match="missing graphs/"):
        ProductIndex.open(tmp_path / "bundle", verify=False)


def test_graph_file_names_are_safe_for_any_category_name(tmp_path: Path) -> None:
    vectors, _ = clustered(40, seed=9)
    names = ["../../etc", "Röcke / Kleider", "a" * 200, "Röcke _ Kleider"]
    index = build_index(tmp_path / "bundle", [product(i, names[i % 4]) for i in range(40)], vectors,
                        fingerprint=FINGERPRINT, switch=5)
    files = [g["file"] for g in json.loads((tmp_path / "bundle" / "manifest.json").read_text())["graphs"]]
    assert len(set(files)) == 4
    assert all((tmp_path / "bundle" / f).resolve().parent == (tmp_path / "bundle" / "graphs").resolve() for f in files)
    assert {entry.category: entry.count for entry in index.manifest.graphs} == {name: 10 for name in names}
    assert index.search(vectors[1], 3, category=names[1])[0].label == 1


def test_concurrent_searches_give_what_one_search_gives(tmp_path: Path) -> None:
    index, vectors, _ = build(tmp_path / "bundle")
    asks = [(q, name) for q in queries(vectors, 8, seed=5) for name in ("coats", "boots", "hats", None)]
    expected = [[h.label for h in index.search(q, 10, category=name)] for q, name in asks]
    errors: list[BaseException] = []
    found: list[list[list[int]]] = []

    def search() -> None:
        try:
            found.append([[h.label for h in index.search(q, 10, category=name)] for q, name in asks * 3])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert found == [expected * 3] * 4


class EfRecorder:
    """Wraps a category graph and records the beam of each search (passes every call through)."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.efs: list[int] = []

    def set_ef(self, ef: int) -> None:
        self.efs.append(ef)
        self.real.set_ef(ef)

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def test_a_query_far_outside_the_category_is_searched_again_with_a_wide_beam(tmp_path: Path) -> None:
    index, vectors, categories = build(tmp_path / "bundle")
    graph = index._graphs["coats"] = EfRecorder(index._graphs["coats"])  # type: ignore[assignment]
    coat, hat = rows_of(categories, "coats")[7], rows_of(categories, "hats")[7]
    inside = index.search(vectors[coat], 10, category="coats")
    assert graph.efs == [EF_CATEGORY] and inside[0].label == coat
    graph.efs.clear()
    outside = index.search(vectors[hat], 10, category="coats")
    assert graph.efs == [EF_CATEGORY, EF_CATEGORY_OUTSIDE]
    assert [h.label for h in outside] == exact_top(vectors, vectors[hat], 10, rows_of(categories, "coats"))
