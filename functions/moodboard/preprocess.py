"""CLIP image preprocessing in Pillow and numpy, equal to transformers' CLIPImageProcessor.

The vision graph was trained on pixels prepared one exact way; a different resize rounding or crop
offset shifts every embedding a little and silently lowers match quality. So each step here copies
CLIPImageProcessor (transformers 4.57): `convert("RGB")`; resize so the shortest edge equals
`shortest_edge`, the other edge `int(shortest_edge * long / short)` (truncated, not rounded), with
the PIL filter `resample`; centre crop with offsets `(size - crop) // 2`, zero-padding first when
the resized image is smaller than the crop; multiply by `rescale_factor` in float64, cast to
float32; `(x - mean) / std`; channels first. tests/unit/test_preprocess.py holds it to that.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydantic import ValidationError

from moodboard.errors import BundleError
from moodboard.model_bundle import PreprocessConfig

PixelBatch = npt.NDArray[np.float32]


class ImagePreprocessor:
    """Turns PIL images into the `pixel_values` batch the vision graph takes: (n, 3, H, W) float32."""

    def __init__(self, config: PreprocessConfig) -> None:
        self.config = config
        self._mean = np.asarray(config.image_mean, dtype=np.float32).reshape(1, 1, 3)
        self._std = np.asarray(config.image_std, dtype=np.float32).reshape(1, 1, 3)
        self._resample = Image.Resampling(config.resample)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | PreprocessConfig) -> ImagePreprocessor:
        """Build from a preprocess.json mapping (see docs/contracts.md); BundleError if invalid."""
        if isinstance(config, PreprocessConfig):
            return cls(config)
        try:
            return cls(PreprocessConfig.model_validate(dict(config)))
        except (ValidationError, ValueError) as exc:
            raise BundleError(f"invalid preprocessing config: {exc}") from exc

    @classmethod
    def from_file(cls, path: str | Path) -> ImagePreprocessor:
        """Build from a bundle's preprocess.json file."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"cannot read preprocessing config {path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise BundleError(f"preprocessing config {path} is not a JSON object")
        return cls.from_config(raw)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one preprocessed image."""
        return (3, self.config.crop_height, self.config.crop_width)

    def __call__(self, images: Sequence[Image.Image]) -> PixelBatch:
        """Preprocess a batch of images into a (n, 3, crop_height, crop_width) float32 array."""
        out = np.empty((len(images), *self.output_shape), dtype=np.float32)
        for i, image in enumerate(images):
            out[i] = self.one(image)
        return out

    def one(self, image: Image.Image) -> PixelBatch:
        """Preprocess one image into a (3, crop_height, crop_width) float32 array."""
        cfg = self.config
        # The graph needs three channels, so RGB conversion happens even if do_convert_rgb is off.
        if image.mode != "RGB":
            image = image.convert("RGB")
        width, height = resized_size(image.width, image.height, cfg.shortest_edge)
        if (width, height) != image.size:
            image = image.resize((width, height), resample=self._resample)
        pixels = center_crop(np.asarray(image), cfg.crop_height, cfg.crop_width)
        scaled = (pixels.astype(np.float64) * cfg.rescale_factor).astype(np.float32)
        normalised = (scaled - self._mean) / self._std
        return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def resized_size(width: int, height: int, shortest_edge: int) -> tuple[int, int]:
    """(width, height) after resizing the shortest edge to `shortest_edge`, keeping the aspect ratio
    with transformers' rounding: the long edge is `int(shortest_edge * long / short)`."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = shortest_edge, int(shortest_edge * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def center_crop(pixels: np.ndarray, crop_height: int, crop_width: int) -> np.ndarray:
    """Centre crop an (H, W, C) array like transformers' `center_crop`, zero-padding a smaller image
    so it sits in the middle (padding rounded up on the top/left)."""
    height, width = pixels.shape[:2]
    top = (height - crop_height) // 2
    left = (width - crop_width) // 2
    if top >= 0 and left >= 0:
        return pixels[top : top + crop_height, left : left + crop_width]
    new_height, new_width = max(crop_height, height), max(crop_width, width)
    padded = np.zeros((new_height, new_width, *pixels.shape[2:]), dtype=pixels.dtype)
    top_pad = math.ceil((new_height - height) / 2)
    left_pad = math.ceil((new_width - width) / 2)
    padded[top_pad : top_pad + height, left_pad : left_pad + width] = pixels
    top += top_pad
    left += left_pad
    rows = slice(max(0, top), min(new_height, top + crop_height))
    cols = slice(max(0, left), min(new_width, left + crop_width))
    return padded[rows, cols]
