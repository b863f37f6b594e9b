"""A generated demo catalog: small product photos drawn with Pillow, for offline runs and tests.

Each product is a simple silhouette of its product type (dress, shoes, lamp, ...) painted in one of a
few palettes (pastel, earthy, neon, monochrome, ocean), so a query image in a palette has a right
answer inside every product type.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

PALETTES: dict[str, list[tuple[int, int, int]]] = {
    "pastel": [(248, 200, 220), (200, 230, 250), (255, 240, 200), (220, 210, 250)],
    "earthy": [(120, 80, 50), (170, 130, 80), (90, 110, 60), (200, 170, 120)],
    "neon": [(255, 20, 150), (40, 255, 60), (20, 220, 255), (255, 240, 0)],
    "monochrome": [(20, 20, 20), (90, 90, 90), (170, 170, 170), (240, 240, 240)],
    "ocean": [(10, 60, 120), (30, 120, 170), (120, 200, 210), (230, 245, 250)],
}
CATEGORIES = ["dress", "shoes", "lamp", "bag", "hat", "sofa"]
IMAGE_SIZE = 160


def _draw_silhouette(draw: ImageDraw.ImageDraw, category: str, color: tuple[int, int, int], rng: random.Random) -> None:
    s = IMAGE_SIZE
    j = lambda: rng.randint(-8, 8)  # noqa: E731 - tiny jitter helper
    if category == "dress":
        draw.polygon([(s * 0.4 + j(), s * 0.15), (s * 0.6 + j(), s * 0.15), (s * 0.8 + j(), s * 0.9), (s * 0.2 + j(), s * 0.9)], fill=color)
    elif category == "shoes":
        draw.ellipse([s * 0.1 + j(), s * 0.55, s * 0.9 + j(), s * 0.8], fill=color)
        draw.rectangle([s * 0.1 + j(), s * 0.35, s * 0.35, s * 0.7], fill=color)
    elif category == "lamp":
        draw.polygon([(s * 0.3 + j(), s * 0.4), (s * 0.7 + j(), s * 0.4), (s * 0.6, s * 0.15), (s * 0.4, s * 0.15)], fill=color)
        draw.rectangle([s * 0.47, s * 0.4, s * 0.53, s * 0.85], fill=color)
        draw.rectangle([s * 0.35, s * 0.85, s * 0.65, s * 0.9], fill=color)
    elif category == "bag":
        draw.rectangle([s * 0.2 + j(), s * 0.4, s * 0.8 + j(), s * 0.85], fill=color)
        draw.arc([s * 0.3, s * 0.15, s * 0.7, s * 0.6], 180, 360, fill=color, width=8)
    elif category == "hat":
        draw.ellipse([s * 0.1 + j(), s * 0.55, s * 0.9 + j(), s * 0.7], fill=color)
        draw.rectangle([s * 0.3 + j(), s * 0.3, s * 0.7 + j(), s * 0.62], fill=color)
    else:  # sofa
        draw.rectangle([s * 0.1 + j(), s * 0.45, s * 0.9 + j(), s * 0.75], fill=color)
        draw.rectangle([s * 0.1, s * 0.3, s * 0.9, s * 0.5], fill=color)
        draw.rectangle([s * 0.12, s * 0.75, s * 0.18, s * 0.85], fill=color)
        draw.rectangle([s * 0.82, s * 0.75, s * 0.88, s * 0.85], fill=color)


def draw_product(category: str, palette: str, rng: random.Random) -> Image.Image:
    """Draw one product photo: a palette-tinted background, the silhouette, light texture."""
    colors = PALETTES[palette]
    background, main, accent = rng.sample(colors, 3)
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 5)):
        x, y = rng.randint(0, IMAGE_SIZE), rng.randint(0, IMAGE_SIZE)
        r = rng.randint(4, 14)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=accent)
    _draw_silhouette(draw, category, main, rng)
    return image.filter(ImageFilter.SMOOTH)


def draw_mood_image(palette: str, seed: int = 0, size: int = 320) -> Image.Image:
    """An 'inspiration picture' in a palette: stripes and blobs, no product in it."""
    rng = random.Random(seed)
    colors = PALETTES[palette]
    image = Image.new("RGB", (size, size), colors[0])
    draw = ImageDraw.Draw(image)
    for i in range(12):
        color = colors[i % len(colors)]
        x, y = rng.randint(0, size), rng.randint(0, size)
        r = rng.randint(size // 12, size // 4)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
    return image.filter(ImageFilter.GaussianBlur(2))


def generate_demo_catalog(out_dir: Path, *, per_category: int = 20, seed: int = 0,
                          categories: list[str] | None = None) -> Path:
    """Write `catalog.csv` and `images/*.jpg` under out_dir and return the CSV's path.

    Products cycle through the palettes, so every category holds every palette.
    """
    rng = random.Random(seed)
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    palettes = sorted(PALETTES)
    rows = []
    for category in categories or CATEGORIES:
        for i in range(per_category):
            palette = palettes[i % len(palettes)]
            product_id = f"{category}-{i:04d}"
            path = images_dir / f"{product_id}.jpg"
            draw_product(category, palette, rng).save(path, quality=90)
            rows.append({
                "id": product_id,
                "title": f"{palette.title()} {category} no. {i + 1}",
                "category": category,
                "image": f"images/{product_id}.jpg",
                "product_url": f"https://shop.example/{product_id}",
                "price": f"{rng.randint(15, 400)}.00",
                "currency": "EUR",
                "palette": palette,
            })
    catalog = out_dir / "catalog.csv"
    with catalog.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return catalog


if __name__ == "__main__":
    import sys

    print(generate_demo_catalog(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-catalog")))
