"""Safe image decoding: untrusted bytes -> an RGB PIL image, or a domain error saying why not.

Every image a user sends or a catalog points at passes through `decode_image`. It checks the byte
size before Pillow sees the data, restricts Pillow to a few well-known formats, reads width, height
and mode from the header and refuses an image before any pixel is decoded when it has too many
pixels or would take too many bytes once decoded (decompression bombs: a 38-byte WebP can declare
16383x2400), forces a full decode so truncated files fail here rather than as grey bands in an
embedding, applies the EXIF orientation, and converts every colour mode to RGB.

Decoding is the memory-hungry step, so a process decodes at most `max_concurrent_decodes` images
at once (DecodeGate); a decode that waits past `decode_wait_seconds` for its turn is refused (503).

RGB conversion follows transformers' `convert_to_rgb` (what CLIPImageProcessor does): a plain
`Image.convert("RGB")`, so alpha is dropped rather than composited, and catalog and query images
are seen the way CLIP was trained to see them. The one exception is high-bit-depth greyscale
(16-bit PNG/TIFF), which Pillow would clip to white; it is scaled to 8 bits instead.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError

from moodboard.errors import ConfigError, CorruptImage, DecodersBusy, ImageTooLarge, UnsupportedImage
from moodboard.settings import get_settings

logger = logging.getLogger(__name__)

# Pillow plugins we let parse untrusted bytes (the JPEG plugin also opens multi-picture "MPO" JPEGs).
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
FORMAT_NAMES = "JPEG, PNG, WebP, GIF, BMP or TIFF"

# Leading bytes of the allowed formats, to tell "a broken PNG" from "not an image at all".
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

_HIGH_BIT_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
RGB_BYTES_PER_PIXEL = 3
# High-bit-depth greyscale is rescaled through a float64 copy (see _high_bit_depth_to_l).
RESCALE_BYTES_PER_PIXEL = 8
# A mode Pillow does not describe is sized as the widest common layout (4 bands of 8 bits).
UNKNOWN_MODE_BYTES_PER_PIXEL = 4
# What the plugins raise on malformed data; Pillow does not wrap them in one type.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError)


class DecodeGate:
    """At most `slots` decodes at once; a caller waits up to `wait_seconds` for its turn."""

    def __init__(self, slots: int, wait_seconds: float) -> None:
        if slots < 1:
            raise ConfigError(f"max_concurrent_decodes must be at least 1, not {slots}")
        self.slots = slots
        self.wait_seconds = wait_seconds
        self._semaphore = threading.BoundedSemaphore(slots)

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold one decode slot for the block; DecodersBusy (503) if none frees up in time."""
        if not self._semaphore.acquire(timeout=self.wait_seconds):
            raise DecodersBusy(
                f"the server is busy decoding other images ({self.slots} at once); try again in a moment",
                details={"max_concurrent_decodes": self.slots},
            )
        try:
            yield
        finally:
            self._semaphore.release()


@lru_cache(maxsize=1)
def process_decode_gate() -> DecodeGate:
    """This process's gate, sized by the settings (max_concurrent_decodes, decode_wait_seconds)."""
    settings = get_settings()
    return DecodeGate(settings.max_concurrent_decodes, settings.decode_wait_seconds)


def decoded_bytes(width: int, height: int, mode: str) -> int:
    """Bytes of the largest pixel buffer decoding an image of this header makes: the raster as
    declared (width x height x bands x bytes per band), or the RGB image it becomes, or for
    high-bit-depth greyscale the float64 copy it is rescaled through, whichever is largest."""
    try:
        described = ImageMode.getmode(mode)
        per_pixel = len(described.bands) * np.dtype(described.typestr).itemsize
    except (KeyError, TypeError):
        per_pixel = UNKNOWN_MODE_BYTES_PER_PIXEL
    if mode in _HIGH_BIT_DEPTH_MODES:
        per_pixel = max(per_pixel, RESCALE_BYTES_PER_PIXEL)
    return width * height * max(per_pixel, RGB_BYTES_PER_PIXEL)


def decode_image(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    max_decoded_bytes: int | None = None,
    gate: DecodeGate | None = None,
) -> Image.Image:
    """Decode untrusted image bytes into an RGB image with EXIF orientation applied.

    Raises ImageTooLarge when the data is over `max_bytes` (checked before decoding), or the header
    claims more than `max_pixels` pixels or a decoded size over `max_decoded_bytes` (both checked
    before the pixels are decoded), UnsupportedImage when the bytes are empty, not an image or not
    an allowed format, CorruptImage when they start like an image but are truncated or broken, and
    DecodersBusy when no decode slot of `gate` frees up in time. Messages are one line, fit for users.
    `max_decoded_bytes` and `gate` default to this process's settings (`process_decode_gate`).
    """
    if max_decoded_bytes is None:
        max_decoded_bytes = get_settings().max_decoded_image_bytes
    if gate is None:
        gate = process_decode_gate()
    size = len(data)
    if size == 0:
        raise UnsupportedImage("the image is empty (0 bytes)", details={"bytes": 0})
    if size > max_bytes:
        raise ImageTooLarge(
            f"the image is {_human_bytes(size)}, over the limit of {_human_bytes(max_bytes)}",
            details={"bytes": size, "max_bytes": max_bytes},
        )
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        # Pillow's own guard fired while reading the header: far over any sane limit.
        limit = max_pixels if Image.MAX_IMAGE_PIXELS is None else min(max_pixels, 2 * Image.MAX_IMAGE_PIXELS)
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        count = f"{int(claimed.group(1)):,} pixels" if claimed else "too many pixels"
        raise ImageTooLarge(
            f"the image claims {count}, over the limit of {limit:,}", details={"max_pixels": max_pixels}
        ) from exc
    except UnidentifiedImageError as exc:
        raise _unidentified(data) from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        name = _sniff(data) or "image"
        raise CorruptImage(f"the {name} image is truncated or corrupt: {_reason(exc)}") from exc

    try:
        width, height = image.size
        fmt = image.format or "image"
        if width <= 0 or height <= 0:
            raise CorruptImage(f"the {fmt} image claims a size of {width}x{height} pixels")
        if width * height > max_pixels:
            raise ImageTooLarge(
                f"the image is {width}x{height} = {width * height:,} pixels, "
                f"over the limit of {max_pixels:,}",
                details={"width": width, "height": height, "max_pixels": max_pixels},
            )
        needed = decoded_bytes(width, height, image.mode)
        if needed > max_decoded_bytes:
            raise ImageTooLarge(
                f"the {fmt} image ({width}x{height}, mode {image.mode}) would take {_human_bytes(needed)} "
                f"to decode, over the limit of {_human_bytes(max_decoded_bytes)}",
                details={"width": width, "height": height, "decoded_bytes": needed,
                         "max_decoded_bytes": max_decoded_bytes},
            )
        with gate.turn():
            try:
                image.load()
            except _DECODE_ERRORS as exc:
                raise CorruptImage(f"the {fmt} image is truncated or corrupt: {_reason(exc)}") from exc
            except MemoryError as exc:
                raise ImageTooLarge(f"the {fmt} image is too large to decode") from exc
            _apply_orientation(image)
            rgb = to_rgb(image)
            if rgb is image:
                # A plain Image around the same pixels (no copy): the opened file object keeps the
                # format plugin's state alive, e.g. libwebp's decoder with its own full-size canvas.
                rgb = image._new(image.im)
    finally:
        image.close()  # the plugin's state and, unless shared with rgb, the decoded raster
    return rgb


def load_image_file(
    path: str | Path,
    *,
    max_bytes: int,
    max_pixels: int,
    max_decoded_bytes: int | None = None,
    gate: DecodeGate | None = None,
) -> Image.Image:
    """Read and decode an image file with the same checks as `decode_image`.

    The file size is checked before it is read. A missing or unreadable file raises
    UnsupportedImage naming the path.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageTooLarge(
                f"{path.name} is {_human_bytes(size)}, over the limit of {_human_bytes(max_bytes)}",
                details={"bytes": size, "max_bytes": max_bytes, "path": str(path)},
            )
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise UnsupportedImage(f"cannot read image file {path}: {exc.strerror or exc}") from exc
    return decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes,
                        gate=gate)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB the way CLIPImageProcessor does (alpha dropped, palette
    expanded, CMYK and greyscale converted), except that 16/32-bit greyscale is scaled, not clipped."""
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        return _high_bit_depth_to_l(image).convert("RGB")
    if image.mode == "P" and isinstance(image.info.get("transparency"), bytes):
        # Per-entry palette alpha is dropped either way; removing it first spares Pillow's warning.
        image = image.copy()
        del image.info["transparency"]
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise UnsupportedImage(f"images in colour mode {image.mode} are not supported") from exc


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """Map 16-bit, 32-bit integer or float greyscale to 8 bits, keeping the tonal range."""
    values = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16"):
        scaled = values / 257.0
    elif image.mode == "F" and values.size and values.max() <= 1.0:
        scaled = values * 255.0
    elif values.size and values.max() > 255:
        scaled = values / 257.0
    else:
        scaled = values
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _apply_orientation(image: Image.Image) -> None:
    """Rotate/flip in place per the EXIF Orientation tag (no copy of an upright image); a malformed
    EXIF block leaves the image as stored."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except _DECODE_ERRORS as exc:
        logger.debug("ignoring unreadable EXIF orientation: %s", exc)


def _unidentified(data: bytes) -> UnsupportedImage | CorruptImage:
    """Explain why Pillow could not identify the bytes: broken known format, markup, or other."""
    name = _sniff(data)
    if name is not None:
        return CorruptImage(f"the {name} image is truncated or corrupt: its header cannot be read")
    stripped = data[:512].lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return UnsupportedImage("got an HTML page, not an image")
    if stripped.startswith(b"<"):
        return UnsupportedImage(f"got markup text, not an image (supported: {FORMAT_NAMES})")
    return UnsupportedImage(f"not a supported image (supported: {FORMAT_NAMES})")


def _sniff(data: bytes) -> str | None:
    """The allowed format the leading bytes announce, if any."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WebP"
    return None


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _human_bytes(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"
