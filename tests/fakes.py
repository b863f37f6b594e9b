"""Fakes for logic tests: deterministic stand-ins that need no model files."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from moodboard.vectors import Vector, l2_normalize

FAKE_DIM = 32


class FakeEmbedder:
    """A deterministic embedder: images map to a vector built from their colours and coarse layout,
    texts to a vector seeded by a hash of the text. Similar images give similar vectors, equal inputs
    give equal vectors, so ranking logic can be tested without ONNX."""

    def __init__(self, dim: int = FAKE_DIM, fingerprint: str = "fake-embedder-0001", source: str | None = None) -> None:
        self.dim = dim
        self.fingerprint = fingerprint
        self.precision = "fp32"
        self.tiny = False
        self.source = source
        self.description: str | None = None
        self.trained = False
        self.near_copy_threshold: float | None = None
        self.text_calls: list[str] = []
        self.image_calls = 0

    def embed_images(self, images: Sequence[Image.Image]) -> Vector:
        self.image_calls += len(images)
        rows = []
        for image in images:
            small = np.asarray(image.convert("RGB").resize((4, 4)), dtype=np.float32) / 255.0
            features = small.reshape(-1)  # 48 values: colour per coarse cell
            vec = np.resize(features - 0.5, self.dim)
            rows.append(vec)
        return l2_normalize(np.stack(rows)) if rows else np.zeros((0, self.dim), np.float32)

    def embed_texts(self, texts: Sequence[str]) -> Vector:
        self.text_calls.extend(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).standard_normal(self.dim))
        return l2_normalize(np.stack(rows)) if rows else np.zeros((0, self.dim), np.float32)
