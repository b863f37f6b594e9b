"""Everything the sections measure on, built locally and cached under benchmarks/.cache/.

- Model bundles (model_export.export.export_tiny: "tiny" for the smoke run, "base" for ViT-B/32's
  shape with random weights, same compute as the real model) and the matching transformers
  checkpoint for the PyTorch eager baseline (model_export.tiny.build_tiny_clip, same seed, so the
  same weights).
- STRUCTURED vectors: clusters on a low-dimensional subspace plus isotropic noise, mean
  nearest-neighbour cosine about 0.86-0.89 like real CLIP embedding spaces. Isotropic random vectors
  in 512 dimensions are the worst case of every ANN index and unlike any real embedding space
  (DESIGN.md), so no recall figure here comes from them.
- A synthetic product index bundle (products + structured vectors) for the query and cold-start
  sections, generated catalogs (images drawn by moodboard_local.demo_catalog) for the loader section.

Each cached item is built in a staging directory and renamed into place, so an interrupted build
is never mistaken for a finished one.
"""

from __future__ import annotations

import csv
import io
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.perf.common import Context, ensure_path, progress

ensure_path()

# Product types of the synthetic 100k index, with their share of the catalog (uneven, like a shop).
E2E_CATEGORIES = {"dress": 0.22, "top": 0.18, "shoes": 0.14, "trousers": 0.12, "bag": 0.09, "jacket": 0.08,
                  "skirt": 0.06, "hat": 0.04, "lamp": 0.04, "sofa": 0.03}
CLOTHING_DATASET = Path("/work/shared/data/clothing-dataset")
SAMPLE_TEXTS = [
    "a photo of a dress", "flowing linen summer dress in pastel colours", "chunky black leather boots",
    "minimal scandinavian floor lamp", "velvet sofa in deep green", "oversized denim jacket",
    "straw hat for the beach", "red sneakers", "a photo of a bag", "boho embroidered blouse",
    "tailored grey wool trousers", "sequin party skirt", "vintage brown leather satchel",
    "neon pink running shoes", "cosy knitted cardigan", "a photo of a lamp",
]


def cached(path: Path, build: Callable[[Path], None]) -> Path:
    """`path` if it was built before, else build it into a staging dir and rename it into place."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        build(staging)
        staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def model_bundle(ctx: Context, size: str | None = None) -> Path:
    """The random CLIP model bundle of this size (fp32 + int8), exported through model_export."""
    size = size or ctx.profile.model_size

    def build(staging: Path) -> None:
        from model_export.export import export_tiny

        progress.print(f"  building the {size} model bundle (once; cached in {ctx.cache})")
        export_tiny(staging / "bundle", size=size, quantize="int8")

    return cached(ctx.cache / f"bundle-{size}", build) / "bundle"


def torch_checkpoint(ctx: Context, size: str | None = None) -> Path:
    """The transformers checkpoint with the bundle's weights (same builder, same seed)."""
    size = size or ctx.profile.model_size

    def build(staging: Path) -> None:
        from model_export.tiny import build_tiny_clip

        progress.print(f"  building the {size} PyTorch checkpoint (once)")
        build_tiny_clip(staging / "checkpoint", size=size)

    return cached(ctx.cache / f"checkpoint-{size}", build) / "checkpoint"


def structured_vectors(n: int, dim: int = 512, *, seed: int = 0, clusters: int = 256, rank: int = 32,
                       spread: float = 0.5, noise: float = 0.035,
                       with_clusters: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """n unit vectors in `clusters` clusters on a random `rank`-dimensional subspace plus noise
    (and, with `with_clusters`, each row's cluster id).

    Generated in chunks so 1M x 512 does not need a float64 copy; deterministic in (n, seed).
    """
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
    centers = rng.standard_normal((clusters, rank))
    out = np.empty((n, dim), np.float32)
    ids = np.empty(n, np.int32)
    chunk = 100_000
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        assign = rng.integers(0, clusters, m)
        low = centers[assign] + spread * rng.standard_normal((m, rank))
        x = low @ basis.T + noise * rng.standard_normal((m, dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start:start + m] = x
        ids[start:start + m] = assign
    return (out, ids) if with_clusters else out


def queries_near(vectors: np.ndarray, count: int, *, seed: int, jitter: float = 0.02) -> np.ndarray:
    """Query vectors: random rows moved a little (a query is near the data but never a copy of a row)."""
    rng = np.random.default_rng(seed + 1)
    rows = vectors[rng.choice(vectors.shape[0], count, replace=False)]
    q = rows + jitter * rng.standard_normal(rows.shape).astype(np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def mean_nn_cosine(vectors: np.ndarray, sample: int = 200, seed: int = 0) -> float:
    """Mean cosine of a row's nearest other row, over a sample of rows: how structured the data is."""
    rng = np.random.default_rng(seed + 7)
    picks = rng.choice(vectors.shape[0], min(sample, vectors.shape[0]), replace=False)
    best = np.full(picks.size, -1.0, np.float32)
    for start in range(0, vectors.shape[0], 100_000):
        block = vectors[start:start + 100_000]
        scores = vectors[picks] @ block.T
        own = (picks >= start) & (picks < start + block.shape[0])
        scores[np.nonzero(own)[0], picks[own] - start] = -1.0
        best = np.maximum(best, scores.max(axis=1))
    return float(best.mean())


def category_names(n: int, shares: dict[str, float], *, seed: int, clusters: np.ndarray | None = None) -> list[str]:
    """A category per row: each name gets its share of the rows, the remainder is 'rest'. Rows are
    chosen at random (independent of the vector clusters), or, given the rows' cluster ids, as runs
    of whole clusters, the way product types group in a real embedding space (then most queries lie
    outside the category they search: the other hard case for a filtered graph walk)."""
    rng = np.random.default_rng(seed + 3)
    order = rng.permutation(n) if clusters is None else np.argsort(clusters, kind="stable")
    names = np.full(n, "rest", dtype=object)
    start = 0
    for name, share in shares.items():
        size = round(share * n)
        names[order[start:start + size]] = name
        start += size
    return list(names)


def synthetic_products(n: int, categories: list[str]) -> list:
    """Product records with URL images (no thumbnails needed) and the given categories."""
    from moodboard.catalog import Product

    return [Product(id=f"p{i:07d}", title=f"{category} no. {i}", category=category,
                    image=f"https://img.example/{i}.jpg", product_url=f"https://shop.example/p/{i}",
                    price=float(10 + i % 290), currency="EUR")
            for i, category in enumerate(categories)]


def write_product_index(path: Path, products: list, vectors: np.ndarray, fingerprint: str, *,
                        precision: str = "fp32", switch: int | None = None) -> Any:
    """Write an index bundle of these products and vectors to `path` (moodboard.index.IndexBuilder,
    the shipped switch unless given); returns the builder (its `seconds` per build step)."""
    from moodboard.index import IndexBuilder
    from moodboard.index.manifest import SWITCH

    builder = IndexBuilder(vectors.shape[1], fingerprint, model_precision=precision,
                           switch=SWITCH if switch is None else switch)
    builder.add(products, vectors)
    builder.write(path)
    return builder


def search_index(ctx: Context, bundle: Path, n: int) -> Path:
    """A saved index bundle of n synthetic products for the bundle's model (E2E_CATEGORIES shares)."""
    from moodboard.model_bundle import load_manifest

    manifest = load_manifest(bundle, verify=False)

    def build(staging: Path) -> None:
        progress.print(f"  building a {n:,}-product index bundle (once)")
        vectors = structured_vectors(n, manifest.dim, seed=ctx.seed)
        products = synthetic_products(n, category_names(n, E2E_CATEGORIES, seed=ctx.seed))
        write_product_index(staging / "index", products, vectors, manifest.fingerprint)

    return cached(ctx.cache / f"index-{manifest.fingerprint[:12]}-{n}", build) / "index"


def jpeg_bytes(size: int = 500, seed: int = 0) -> bytes:
    """An inspiration picture as a shopper would upload it: size x size JPEG, quality 90."""
    from moodboard_local.demo_catalog import PALETTES, draw_mood_image

    palette = sorted(PALETTES)[seed % len(PALETTES)]
    buffer = io.BytesIO()
    draw_mood_image(palette, seed=seed, size=size).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def sample_images(count: int, seed: int = 0) -> list:
    """Varied RGB images: drawn products and mood pictures (for cosine and throughput figures)."""
    from moodboard_local.demo_catalog import CATEGORIES, PALETTES, draw_mood_image, draw_product
    from PIL import Image

    rng = random.Random(seed)
    palettes = sorted(PALETTES)
    images = []
    for i in range(count):
        if i % 2:
            images.append(draw_mood_image(palettes[i % len(palettes)], seed=seed + i, size=500))
        else:
            images.append(draw_product(CATEGORIES[i % len(CATEGORIES)], palettes[i % len(palettes)], rng)
                          .resize((400, 533), Image.Resampling.BICUBIC))
    return images


def generated_catalog(ctx: Context, n: int) -> Path:
    """catalog.csv of n products with drawn images (moodboard_local.demo_catalog). Smaller catalogs are
    prefixes of the largest one built, so only one set of images is drawn."""
    from moodboard_local.demo_catalog import CATEGORIES, generate_demo_catalog

    largest = max(ctx.profile.loader_sizes + (n,))
    per_category = -(-largest // len(CATEGORIES))

    def build_images(staging: Path) -> None:
        progress.print(f"  drawing a {per_category * len(CATEGORIES):,}-image catalog (once)")
        generate_demo_catalog(staging / "catalog", per_category=per_category, seed=ctx.seed)

    source = cached(ctx.cache / f"catalog-gen-{per_category * len(CATEGORIES)}", build_images) / "catalog"
    with (source / "catalog.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if n > len(rows):
        raise ValueError(f"the generated catalog holds {len(rows)} products, {n} asked")
    rows = rows[:: max(1, len(rows) // n)][:n] if n < len(rows) else rows
    out = source / f"catalog-{n}.csv"
    if not out.exists():
        with out.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return out


def dataset_catalog(ctx: Context, limit: int | None) -> Path | None:
    """The clothing dataset as a catalog (the folder itself, or a CSV of its first `limit` images);
    None when the dataset is not on this machine (it is never required)."""
    if not (CLOTHING_DATASET / "images.csv").is_file():
        return None
    if limit is None:
        return CLOTHING_DATASET
    # Catalog image paths must stay inside the catalog's folder, so the CSV sits beside a link to
    # the dataset's images and names them relatively.
    folder = ctx.cache / f"clothing-{limit}"
    out = folder / "catalog.csv"
    if not out.exists():
        folder.mkdir(parents=True, exist_ok=True)
        images = folder / "images"
        if not images.is_symlink():
            images.symlink_to(CLOTHING_DATASET / "images", target_is_directory=True)
        with (CLOTHING_DATASET / "images.csv").open(newline="") as fh:
            rows = list(csv.DictReader(fh))[:limit]
        with out.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "title", "category", "image"])
            for r in rows:
                writer.writerow([r["image"], f"{r['label']} {r['image'][:8]}", r["label"],
                                 f"images/{r['image']}.jpg"])
    return out
