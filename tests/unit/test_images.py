"""Safe decoding of untrusted images: hostile inputs give the right error, every mode becomes RGB."""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageFile

from moodboard import errors, http_errors, images
from moodboard.errors import CorruptImage, ImageError, ImageTooLarge, UnsupportedImage
from moodboard.images import decode_image, load_image_file, to_rgb
from moodboard.settings import get_settings

MAX_BYTES = 1024 * 1024
MAX_PIXELS = 4_000_000


def decode(data: bytes, **limits: int) -> Image.Image:
    return decode_image(
        data, max_bytes=limits.get("max_bytes", MAX_BYTES), max_pixels=limits.get("max_pixels", MAX_PIXELS)
    )


def noisy_rgb(width: int = 120, height: int = 90, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels but whose data is a few garbage bytes,
    so decoding the pixels could only fail as corrupt: an ImageTooLarge proves the check came first."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\x07" * 50)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def assert_one_line(exc: pytest.ExceptionInfo[ImageError]) -> str:
    message = str(exc.value)
    assert message and "\n" not in message and message == exc.value.message
    return message


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_decode_truncated_image_raises_corrupt_image(fmt: str) -> None:
    data = encoded(noisy_rgb(), fmt)
    with pytest.raises(CorruptImage) as exc:
        decode(data[: len(data) // 2])
    message = assert_one_line(exc)
    assert "truncated or corrupt" in message
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_decode_image_cut_inside_header_raises_corrupt_image(fmt: str) -> None:
    data = encoded(noisy_rgb(), fmt)
    with pytest.raises(CorruptImage) as exc:
        decode(data[:12])
    assert f"the {fmt} image is truncated or corrupt" in assert_one_line(exc)


def test_decode_png_missing_last_bytes_raises_corrupt_image() -> None:
    data = encoded(noisy_rgb(), "PNG")
    with pytest.raises(CorruptImage):
        decode(data[:-30])


def test_decode_zero_bytes_raises_unsupported_image() -> None:
    with pytest.raises(UnsupportedImage) as exc:
        decode(b"")
    assert assert_one_line(exc) == "the image is empty (0 bytes)"
    assert exc.value.status_code == 415


def test_decode_html_page_raises_unsupported_image() -> None:
    html = b"\n  <!DOCTYPE html><html><head><meta property='og:image' content='x.jpg'></head></html>"
    with pytest.raises(UnsupportedImage) as exc:
        decode(html)
    assert assert_one_line(exc) == "got an HTML page, not an image"


def test_decode_plain_text_raises_unsupported_image() -> None:
    with pytest.raises(UnsupportedImage) as exc:
        decode(b"just some words, definitely not pixels\n" * 20)
    assert assert_one_line(exc) == "not a supported image (supported: JPEG, PNG, WebP, GIF, BMP or TIFF)"


def test_decode_format_outside_allow_list_raises_unsupported_image() -> None:
    ppm = encoded(noisy_rgb(8, 8), "PPM")
    assert Image.open(io.BytesIO(ppm)).format == "PPM"  # Pillow itself would decode it
    with pytest.raises(UnsupportedImage, match="not a supported image"):
        decode(ppm)


def test_decode_header_claiming_50000x50000_pixels_raises_image_too_large() -> None:
    data = png_claiming(50_000, 50_000)
    assert len(data) < 200
    with pytest.raises(ImageTooLarge) as exc:
        decode(data, max_pixels=40_000_000)
    assert assert_one_line(exc) == "the image claims 2,500,000,000 pixels, over the limit of 40,000,000"
    assert exc.value.status_code == 413


def test_decode_pixel_limit_checked_from_header_before_decoding() -> None:
    # 8000x8000 is under Pillow's own bomb guard, so only our header check can stop it; the pixel
    # data is garbage, so had the pixels been decoded this would have been a CorruptImage.
    with pytest.raises(ImageTooLarge) as exc:
        decode(png_claiming(8000, 8000), max_pixels=40_000_000)
    assert assert_one_line(exc) == "the image is 8000x8000 = 64,000,000 pixels, over the limit of 40,000,000"
    assert exc.value.details == {"width": 8000, "height": 8000, "max_pixels": 40_000_000}


def test_decode_garbage_pixels_under_the_limit_raise_corrupt_image() -> None:
    with pytest.raises(CorruptImage):
        decode(png_claiming(300, 300))


def test_decode_valid_image_over_pixel_limit_raises_image_too_large() -> None:
    with pytest.raises(ImageTooLarge, match="120x90 = 10,800 pixels, over the limit of 10,000"):
        decode(encoded(noisy_rgb(), "PNG"), max_pixels=10_000)


def test_decode_over_byte_limit_raises_image_too_large_before_decoding() -> None:
    data = b"\x89PNG\r\n\x1a\n" + b"\x00" * 5000  # not even a valid PNG: size is checked first
    with pytest.raises(ImageTooLarge) as exc:
        decode(data, max_bytes=4096)
    assert assert_one_line(exc) == "the image is 4.9 KiB, over the limit of 4.0 KiB"
    assert exc.value.details == {"bytes": 5008, "max_bytes": 4096}


def test_load_image_file_over_byte_limit_raises_image_too_large(tmp_path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(encoded(noisy_rgb(), "PNG"))
    with pytest.raises(ImageTooLarge, match="big.png is .* over the limit of 1000 bytes"):
        load_image_file(path, max_bytes=1000, max_pixels=MAX_PIXELS)


def test_load_image_file_missing_raises_unsupported_image(tmp_path) -> None:
    with pytest.raises(UnsupportedImage, match="cannot read image file .*nope.jpg"):
        load_image_file(tmp_path / "nope.jpg", max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)


def test_load_image_file_decodes_rgb(tmp_path) -> None:
    path = tmp_path / "ok.png"
    original = noisy_rgb()
    path.write_bytes(encoded(original, "PNG"))
    image = load_image_file(path, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)
    assert image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), np.asarray(original))


def rgb_at(image: Image.Image, xy: tuple[int, int] = (2, 2)) -> tuple[int, int, int]:
    assert image.mode == "RGB"
    return image.getpixel(xy)


def solid(mode: str, value: object, size: tuple[int, int] = (16, 12)) -> Image.Image:
    return Image.new(mode, size, value)


def palette_with_transparency() -> Image.Image:
    image = Image.new("P", (16, 12), 1)
    image.putpalette([0, 0, 0, 200, 40, 10] + [0, 0, 0] * 254)
    image.info["transparency"] = 1
    return image


@pytest.mark.parametrize(
    ("source", "fmt", "expected"),
    [
        (solid("RGB", (200, 40, 10)), "PNG", (200, 40, 10)),
        # Alpha is dropped, not composited: transformers' convert_to_rgb does the same.
        (solid("RGBA", (10, 20, 30, 0)), "PNG", (10, 20, 30)),
        (solid("RGBA", (10, 20, 30, 128)), "WEBP", (10, 20, 30)),
        (solid("LA", (90, 0)), "PNG", (90, 90, 90)),
        (solid("L", 128), "PNG", (128, 128, 128)),
        (solid("1", 1), "PNG", (255, 255, 255)),
        (solid("1", 0), "BMP", (0, 0, 0)),
        (solid("RGB", (200, 40, 10)).quantize(8), "GIF", (200, 40, 10)),
        (palette_with_transparency(), "PNG", (200, 40, 10)),
        (palette_with_transparency(), "GIF", (200, 40, 10)),
        (solid("CMYK", (0, 0, 0, 0)), "TIFF", (255, 255, 255)),
        (solid("CMYK", (0, 255, 255, 0)), "TIFF", (255, 0, 0)),
        (solid("CMYK", (0, 0, 0, 255)), "JPEG", (0, 0, 0)),
        (solid("I;16", 65535), "PNG", (255, 255, 255)),
        (solid("I;16", 32896), "PNG", (128, 128, 128)),
        (solid("I;16", 0), "TIFF", (0, 0, 0)),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_decode_converts_every_mode_to_rgb(
    source: Image.Image, fmt: str, expected: tuple[int, int, int]
) -> None:
    data = encoded(source, fmt)
    decoded = decode(data)
    assert decoded.size == source.size
    tolerance = 3 if fmt in ("JPEG", "WEBP") else 0
    np.testing.assert_allclose(rgb_at(decoded), expected, atol=tolerance)


def test_to_rgb_scales_16_bit_greyscale_instead_of_clipping() -> None:
    ramp = Image.fromarray((np.arange(256, dtype=np.uint16) * 257).reshape(16, 16))
    assert ramp.mode == "I;16"
    grey = np.asarray(to_rgb(ramp))[..., 0].reshape(-1)
    np.testing.assert_array_equal(grey, np.arange(256))


def test_to_rgb_rejects_mode_pillow_cannot_convert() -> None:
    with pytest.raises(UnsupportedImage, match="images in colour mode La are not supported"):
        to_rgb(Image.new("La", (4, 4)))


def test_decode_gif_returns_first_frame() -> None:
    frames = [solid("RGB", (250, 0, 0)), solid("RGB", (0, 0, 250))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    np.testing.assert_allclose(rgb_at(decode(data)), (250, 0, 0), atol=2)


def half_red_half_blue(width: int = 40, height: int = 20) -> Image.Image:
    image = Image.new("RGB", (width, height), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, width // 2, height))
    return image


@pytest.mark.parametrize(
    ("orientation", "size", "red_at", "blue_at"),
    [
        (1, (40, 20), (5, 10), (35, 10)),
        (3, (40, 20), (35, 10), (5, 10)),  # rotated 180: red moves right
        (6, (20, 40), (10, 5), (10, 35)),  # rotate 90 clockwise to view: left edge goes to the top
        (8, (20, 40), (10, 35), (10, 5)),  # rotate 90 anticlockwise: left edge goes to the bottom
    ],
)
def test_decode_applies_exif_orientation(orientation, size, red_at, blue_at) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(half_red_half_blue(), "JPEG", exif=exif.tobytes(), quality=95)
    decoded = decode(data)
    assert decoded.size == size
    np.testing.assert_allclose(rgb_at(decoded, red_at), (255, 0, 0), atol=8)
    np.testing.assert_allclose(rgb_at(decoded, blue_at), (0, 0, 255), atol=8)
    assert decoded.getexif().get(0x0112, 1) == 1


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_decode_ignores_unreadable_exif_block() -> None:
    data = encoded(half_red_half_blue(), "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    decoded = decode(data)
    assert decoded.size == (40, 20)


# Decoded-size budget and the per-process bound on concurrent decodes (issue 11, item 14).
# New names are read off the modules (images.X, errors.X) so this file still imports on older code.

def solid_webp(width: int, height: int, color: tuple[int, int, int] = (200, 30, 40)) -> bytes:
    """A real lossless WebP of one colour at any size, in 38 bytes: Pillow encodes it at 1x1, and a
    solid lossless image costs no bits per pixel, so only the VP8L header's 14-bit width-1 and
    height-1 fields (bytes 21-24) change with the size."""
    data = bytearray(encoded(Image.new("RGB", (1, 1), color), "WEBP", lossless=True, quality=0, method=0))
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    flags = int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)  # alpha hint and version bits
    data[21:25] = ((width - 1) | (height - 1) << 14 | flags).to_bytes(4, "little")
    return bytes(data)


class CountingGate:
    """A real DecodeGate whose holders stop inside their turn until `proceed` is set (a slow decode),
    counting how many hold a turn at once."""

    def __init__(self, slots: int, wait_seconds: float) -> None:
        self.gate = images.DecodeGate(slots, wait_seconds)
        self.proceed = threading.Event()
        self.entered = threading.Semaphore(0)
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        with self.gate.turn():
            with self._lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
            self.entered.release()
            try:
                assert self.proceed.wait(timeout=30)
                yield
            finally:
                with self._lock:
                    self.active -= 1


def test_solid_webp_fixture_is_a_real_image_of_the_declared_size() -> None:
    decoded = decode(solid_webp(300, 200))
    assert decoded.size == (300, 200)
    assert rgb_at(decoded, (299, 199)) == (200, 30, 40)


def test_decode_16383x2400_webp_over_decoded_budget_is_413_before_decoding() -> None:
    # Under the 40 MP pixel limit, but 16383 x 2400 x 3 bytes = 112.5 MiB once decoded (and ~600 MiB
    # of peak memory in Pillow's WebP path): the default budget (96 MiB) refuses it from the header.
    data = solid_webp(16383, 2400)
    assert len(data) < 64 and Image.open(io.BytesIO(data)).size == (16383, 2400)
    with pytest.raises(ImageTooLarge) as exc:
        decode_image(data, max_bytes=MAX_BYTES, max_pixels=40_000_000)
    assert assert_one_line(exc) == (
        "the WEBP image (16383x2400, mode RGB) would take 112.5 MiB to decode, over the limit of 96.0 MiB"
    )
    assert exc.value.status_code == 413
    assert exc.value.details == {"width": 16383, "height": 2400, "decoded_bytes": 117_957_600,
                                 "max_decoded_bytes": 96 * 1024 * 1024}


def test_decoded_budget_is_checked_before_taking_a_decode_turn() -> None:
    gate = CountingGate(slots=1, wait_seconds=0)
    gate.proceed.set()
    with pytest.raises(ImageTooLarge):
        decode_image(solid_webp(16383, 2400), max_bytes=MAX_BYTES, max_pixels=40_000_000,
                     max_decoded_bytes=96 * 1024 * 1024, gate=gate)
    assert gate.peak == 0  # refused from the header: no pixel was decoded


@pytest.mark.parametrize(("budget", "ok"), [(120 * 90 * 3, True), (120 * 90 * 3 - 1, False)])
def test_decoded_budget_boundary(budget: int, ok: bool) -> None:
    data = encoded(noisy_rgb(), "PNG")
    limits = {"max_bytes": MAX_BYTES, "max_pixels": MAX_PIXELS, "max_decoded_bytes": budget}
    if ok:
        assert decode_image(data, **limits).size == (120, 90)
    else:
        with pytest.raises(ImageTooLarge, match="would take 31.6 KiB to decode"):
            decode_image(data, **limits)


@pytest.mark.parametrize(
    ("mode", "per_pixel"),
    [("RGB", 3), ("RGBA", 4), ("CMYK", 4), ("L", 3), ("1", 3), ("P", 3), ("LA", 3), ("I;16", 8), ("I", 8), ("F", 8)],
)
def test_decoded_bytes_is_header_size_times_bytes_per_pixel(mode: str, per_pixel: int) -> None:
    # bands x bytes per band of the decoded raster, at least the 3 bytes of the RGB result, and the
    # float64 rescale copy for high-bit-depth greyscale.
    assert images.decoded_bytes(1000, 10, mode) == 10_000 * per_pixel


def test_decode_refused_with_503_when_no_decode_slot_frees_up() -> None:
    gate = images.DecodeGate(slots=2, wait_seconds=0)
    data = encoded(noisy_rgb(), "PNG")
    with gate.turn(), gate.turn():
        with pytest.raises(errors.DecodersBusy) as exc:
            decode_image(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS, gate=gate)
    assert exc.value.status_code == 503
    assert exc.value.message == "the server is busy decoding other images (2 at once); try again in a moment"
    response = http_errors.error_response(exc.value)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert decode_image(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS, gate=gate).size == (120, 90)


def test_decodes_in_other_threads_hold_their_slots_until_done() -> None:
    gate = CountingGate(slots=2, wait_seconds=0)
    data = encoded(noisy_rgb(), "PNG")
    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = [pool.submit(decode_image, data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS, gate=gate)
                for _ in range(2)]
        for _ in range(2):
            assert gate.entered.acquire(timeout=30)
        # Both slots are held by decodes in progress: a third is refused at once.
        with pytest.raises(errors.DecodersBusy):
            decode_image(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS, gate=gate)
        gate.proceed.set()
        assert [future.result(timeout=30).size for future in slow] == [(120, 90)] * 2
    assert decode_image(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS, gate=gate).size == (120, 90)


def test_many_threads_never_decode_more_than_the_slots_at_once() -> None:
    gate = CountingGate(slots=2, wait_seconds=30)
    gate.proceed.set()
    data = encoded(noisy_rgb(), "PNG")
    with ThreadPoolExecutor(max_workers=8) as pool:
        sizes = list(pool.map(lambda _: decode_image(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS,
                                                     gate=gate).size, range(32)))
    assert sizes == [(120, 90)] * 32
    assert 1 <= gate.peak <= 2


def test_process_decode_gate_is_sized_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOODBOARD_MAX_CONCURRENT_DECODES", "3")
    monkeypatch.setenv("MOODBOARD_DECODE_WAIT_SECONDS", "0.5")
    get_settings.cache_clear()
    images.process_decode_gate.cache_clear()
    try:
        gate = images.process_decode_gate()
        assert (gate.slots, gate.wait_seconds) == (3, 0.5)
        assert images.process_decode_gate() is gate  # one per process
    finally:
        get_settings.cache_clear()
        images.process_decode_gate.cache_clear()


@pytest.mark.parametrize("fmt", ["WEBP", "JPEG", "PNG"])
def test_decoded_rgb_image_keeps_no_format_plugin_state(fmt: str) -> None:
    # An opened WebPImageFile holds libwebp's decoder and its full-size canvas (383 MiB kept alive for
    # a 33 MP image instead of the 127 MiB raster): what decode_image returns is a plain Image.
    decoded = decode(encoded(noisy_rgb(), fmt))
    assert type(decoded) is Image.Image
    assert decoded.mode == "RGB" and decoded.size == (120, 90)


def test_load_image_file_applies_the_decoded_budget(tmp_path) -> None:
    path = tmp_path / "wide.webp"
    path.write_bytes(solid_webp(16383, 2400))
    with pytest.raises(ImageTooLarge, match="would take 112.5 MiB to decode"):
        load_image_file(path, max_bytes=MAX_BYTES, max_pixels=40_000_000)
