"""Preprocessing parity: moodboard.preprocess gives the pixels transformers' CLIPImageProcessor gives."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from moodboard.errors import BundleError
from moodboard.images import decode_image
from moodboard.preprocess import ImagePreprocessor, center_crop, resized_size

transformers = pytest.importorskip("transformers", reason="the export extra (transformers) is the reference")
from transformers import CLIPImageProcessor  # noqa: E402
from transformers.image_transforms import center_crop as hf_center_crop  # noqa: E402
from transformers.image_transforms import get_resize_output_image_size  # noqa: E402
from transformers.image_utils import ChannelDimension  # noqa: E402

MAX_ABS_DIFF = 1e-2


def config_of(processor: CLIPImageProcessor) -> dict:
    """preprocess.json as the exporter writes it for a processor (docs/contracts.md)."""
    return {
        "shortest_edge": processor.size["shortest_edge"],
        "crop_height": processor.crop_size["height"],
        "crop_width": processor.crop_size["width"],
        "image_mean": list(processor.image_mean),
        "image_std": list(processor.image_std),
        "resample": int(processor.resample),
        "rescale_factor": processor.rescale_factor,
        "do_convert_rgb": processor.do_convert_rgb,
    }


def scene(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth gradients plus noise plus hard edges: resampling or crop offset errors all show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 255 * x / max(width - 1, 1)
    g = 255 * y / max(height - 1, 1)
    b = 127 + 127 * np.sin(x / 7.0) * np.cos(y / 5.0)
    pixels = np.stack([r, g, b], axis=-1) + rng.normal(0, 20, (height, width, 3))
    pixels[height // 3 : height // 2, width // 4 : width // 2] = (250, 10, 240)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def in_mode(mode: str, width: int = 301, height: int = 217) -> Image.Image:
    rgb = scene(width, height, seed=len(mode))
    alpha = Image.fromarray(np.random.default_rng(1).integers(0, 256, (height, width), dtype=np.uint8))
    if mode == "RGBA":
        return Image.merge("RGBA", (*rgb.split(), alpha))
    if mode == "LA":
        return Image.merge("LA", (rgb.convert("L"), alpha))
    if mode == "P":
        return rgb.quantize(64)
    if mode == "P+transparency":
        image = rgb.quantize(64)
        image.info["transparency"] = 3
        return image
    if mode == "I;16":
        return Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257))
    return rgb.convert(mode)


def exif_rotated_jpeg() -> Image.Image:
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    scene(320, 200, seed=7).save(buf, "JPEG", exif=exif.tobytes(), quality=92)
    decoded = decode_image(buf.getvalue(), max_bytes=10**7, max_pixels=10**7)
    assert decoded.size == (200, 320)
    return decoded


CASES = {
    "landscape_640x480": lambda: scene(640, 480),
    "portrait_480x640": lambda: scene(480, 640),
    "square_224": lambda: scene(224, 224),
    "square_225": lambda: scene(225, 225),
    "tiny_10x7": lambda: scene(10, 7),
    "tiny_7x10": lambda: scene(7, 10),
    "tiny_2x2": lambda: scene(2, 2),  # 1- or 3-pixel heights confuse transformers' channel guess
    "odd_333x517": lambda: scene(333, 517),
    "wide_1000x225": lambda: scene(1000, 225),
    "tall_97x1201": lambda: scene(97, 1201),
    "banner_3000x41": lambda: scene(3000, 41),
    "mode_RGBA": lambda: in_mode("RGBA"),
    "mode_LA": lambda: in_mode("LA"),
    "mode_P": lambda: in_mode("P"),
    "mode_P_transparency": lambda: in_mode("P+transparency"),
    "mode_L": lambda: in_mode("L"),
    "mode_1": lambda: in_mode("1"),
    "mode_CMYK": lambda: in_mode("CMYK"),
    "mode_I16": lambda: in_mode("I;16"),
    "exif_rotated_jpeg": exif_rotated_jpeg,
}


@pytest.fixture(scope="module")
def reference() -> CLIPImageProcessor:
    processor = CLIPImageProcessor()  # openai CLIP's defaults: shortest edge 224, crop 224, bicubic
    assert processor.size == {"shortest_edge": 224} and int(processor.resample) == 3
    return processor


@pytest.mark.parametrize("name", list(CASES))
def test_preprocess_matches_clip_image_processor(name: str, reference: CLIPImageProcessor) -> None:
    image = CASES[name]()
    ours = ImagePreprocessor.from_config(config_of(reference))([image])
    theirs = reference(images=[image], return_tensors="np")["pixel_values"]
    assert ours.shape == theirs.shape == (1, 3, 224, 224)
    assert ours.dtype == np.float32
    assert np.abs(ours - theirs).max() <= MAX_ABS_DIFF


def test_preprocess_batch_matches_clip_image_processor_batch(reference: CLIPImageProcessor) -> None:
    images = [CASES[name]() for name in ("landscape_640x480", "mode_RGBA", "tiny_10x7", "exif_rotated_jpeg")]
    ours = ImagePreprocessor.from_config(config_of(reference))(images)
    theirs = reference(images=images, return_tensors="np")["pixel_values"]
    assert ours.shape == (4, 3, 224, 224)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=MAX_ABS_DIFF)


@pytest.mark.parametrize(
    ("size", "crop"),
    [
        ({"shortest_edge": 32}, {"height": 32, "width": 32}),
        ({"shortest_edge": 30}, {"height": 40, "width": 36}),  # crop larger than the image: padding
        ({"shortest_edge": 41}, {"height": 17, "width": 29}),  # odd, non-square crop
    ],
)
def test_preprocess_other_sizes_match_clip_image_processor(size: dict, crop: dict) -> None:
    reference = CLIPImageProcessor(
        size=size, crop_size=crop, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3]
    )
    ours = ImagePreprocessor.from_config(config_of(reference))
    for image in (scene(97, 61), scene(61, 97), scene(10, 7), in_mode("RGBA", 50, 80)):
        theirs = reference(images=[image], return_tensors="np")["pixel_values"]
        mine = ours([image])
        assert mine.shape == theirs.shape == (1, 3, crop["height"], crop["width"])
        assert np.abs(mine - theirs).max() <= MAX_ABS_DIFF


def test_resized_size_matches_transformers_rounding() -> None:
    rng = np.random.default_rng(3)
    sizes = [(int(w), int(h)) for w, h in rng.integers(1, 2000, (3000, 2))]
    sizes += [(1, 1), (224, 224), (7, 10), (2, 3)]
    for width, height in sizes:
        for edge in (224, 336, 17):
            h, w = get_resize_output_image_size(
                np.zeros((height, width, 1), np.uint8),
                size=edge,
                default_to_square=False,
                input_data_format=ChannelDimension.LAST,
            )
            assert resized_size(width, height, edge) == (w, h), (width, height, edge)


@pytest.mark.parametrize(("height", "width"), [(10, 7), (7, 10), (224, 224), (300, 225), (5, 300), (31, 33)])
@pytest.mark.parametrize(("crop_h", "crop_w"), [(224, 224), (8, 9), (32, 31)])
def test_center_crop_matches_transformers_offsets_and_padding(height, width, crop_h, crop_w) -> None:
    pixels = np.arange(height * width * 3, dtype=np.float32).reshape(height, width, 3) + 1
    theirs = hf_center_crop(pixels, (crop_h, crop_w), input_data_format=ChannelDimension.LAST)
    np.testing.assert_array_equal(center_crop(pixels, crop_h, crop_w), theirs)


def test_preprocess_one_pixel_image_fills_crop_with_its_colour() -> None:
    processor = CLIPImageProcessor()
    out = ImagePreprocessor.from_config(config_of(processor))([Image.new("RGB", (1, 1), (255, 0, 128))])
    mean, std = np.array(processor.image_mean), np.array(processor.image_std)
    expected = (np.array([255, 0, 128]) / 255 - mean) / std
    np.testing.assert_allclose(out[0, :, 100, 100], expected, atol=1e-5)
    np.testing.assert_allclose(out[0, :, 0, 0], expected, atol=1e-5)


def test_preprocess_empty_batch_gives_empty_array() -> None:
    out = ImagePreprocessor.from_config(config_of(CLIPImageProcessor()))([])
    assert out.shape == (0, 3, 224, 224) and out.dtype == np.float32


def test_preprocessor_from_file_reads_bundle_config(tmp_path) -> None:
    path = tmp_path / "preprocess.json"
    path.write_text(json.dumps(config_of(CLIPImageProcessor(crop_size={"height": 64, "width": 48}))))
    preprocessor = ImagePreprocessor.from_file(path)
    assert preprocessor.output_shape == (3, 64, 48)
    assert preprocessor([scene(100, 100)]).shape == (1, 3, 64, 48)


def test_preprocessor_from_file_rejects_invalid_config(tmp_path) -> None:
    path = tmp_path / "preprocess.json"
    path.write_text(json.dumps({"shortest_edge": 224}))
    with pytest.raises(BundleError, match="invalid preprocessing config"):
        ImagePreprocessor.from_file(path)
    with pytest.raises(BundleError, match="cannot read preprocessing config"):
        ImagePreprocessor.from_file(tmp_path / "missing.json")
