"""The training set: catalog products, their captions, their pixels and the held-out split.

The catalog is read by the runtime's own parser (moodboard.catalog.read_catalog) and each image by
the runtime's decoder (moodboard.images.load_image_file, with its size and pixel limits), resized and
centre-cropped by the runtime's preprocessing functions (moodboard.preprocess), so training sees
the pixels the served model will see. Pixels are kept as uint8 crops and normalised in torch.
Products whose image is a URL or cannot be decoded are left out and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.quality.heldout import HeldOut, split_products
from moodboard.catalog import Product, read_catalog
from moodboard.errors import ConfigError, MoodboardError
from moodboard.images import load_image_file
from moodboard.model_bundle import PreprocessConfig
from moodboard.preprocess import center_crop, resized_size
from moodboard.settings import get_settings
from model_export.train.captions import ProductCaptions, product_captions

logger = logging.getLogger(__name__)

DECODE_THREADS = 2


@dataclass
class Catalog:
    """Products with decodable local images, their captions, and where the catalog came from."""

    products: list[Product]
    captions: list[ProductCaptions]
    source: str
    checksum: str
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.products)

    def held_out(self, rows: Sequence[int]) -> HeldOut:
        return HeldOut(ids=[self.products[i].id for i in rows],
                       categories=[self.products[i].category for i in rows],
                       captions=[self.captions[i].texts for i in rows],
                       primary=[self.captions[i].primary for i in rows])


def load_catalog(path: Path, *, ignore: Sequence[str] = ()) -> Catalog:
    """Read a catalog (.csv, .jsonl or a clothing-dataset folder) and caption its products."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"catalog {path} does not exist")
    read = read_catalog(path)
    skip = set(ignore)
    kept = [p for p in read.products if p.category not in skip]
    local = [p for p in kept if not p.is_url]
    skipped = {"ignored_category": len(read.products) - len(kept), "url_image": len(kept) - len(local),
               "rejected_row": len(read.rejects)}
    if len(local) < 4:
        raise ConfigError(f"{path} has {len(local)} products with local images; training needs at least 4")
    return Catalog(products=local, captions=[product_captions(p) for p in local], source=str(path),
                   checksum=read.checksum, skipped=skipped)


def crop(image: Image.Image, config: PreprocessConfig) -> np.ndarray:
    """The runtime's resize and centre crop, as uint8 (H, W, 3): ImagePreprocessor.one without the
    normalisation, which runs in torch."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    size = resized_size(image.width, image.height, config.shortest_edge)
    if size != image.size:
        image = image.resize(size, resample=Image.Resampling(config.resample))
    return np.ascontiguousarray(center_crop(np.asarray(image), config.crop_height, config.crop_width))


def load_pixels(products: Sequence[Product], config: PreprocessConfig, *,
                progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 crops (n_ok, H, W, 3) of the products' images and the boolean mask of those that decoded."""
    settings = get_settings()
    shape = (config.crop_height, config.crop_width, 3)

    def one(product: Product) -> np.ndarray | None:
        try:
            with load_image_file(Path(product.image), max_bytes=settings.max_image_bytes,
                                 max_pixels=settings.max_image_pixels) as image:
                return crop(image, config)
        except (MoodboardError, OSError) as exc:
            logger.warning("skipping %s: %s", product.id, exc)
            return None

    pixels = np.zeros((len(products), *shape), dtype=np.uint8)
    ok = np.zeros(len(products), dtype=bool)
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        for i, array in enumerate(pool.map(one, products)):
            if array is not None:
                pixels[i], ok[i] = array, True
            if progress:
                progress(1)
    return pixels[ok], ok


def normalise(pixels: "torch.Tensor", config: PreprocessConfig) -> "torch.Tensor":  # noqa: F821
    """uint8 (n, H, W, 3) -> float32 (n, 3, H, W), scaled and normalised as the runtime does."""
    import torch

    mean = torch.tensor(config.image_mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(config.image_std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    scaled = pixels.permute(0, 3, 1, 2).float() * config.rescale_factor
    return (scaled - mean) / std


__all__ = ["Catalog", "crop", "load_catalog", "load_pixels", "normalise", "split_products"]
