"""Uploaded inspiration pictures of evaluation rounds, stored once in the artifacts bucket.

A team member uploads a picture (POST /rounds/pictures, a route of the search function, which has
the image decoder): it passes the search's own checks (moodboard.images.decode_image: bytes, pixels,
decoded bytes, the process's decode gate) and its original bytes are stored under
`rounds/pictures/<sha256>.<ext>`. The key is the content, written create-only (If-None-Match), so a
stored picture never changes and the same picture uploaded twice is stored once. A round item then
names the picture (`RoundItem.picture`) instead of an image URL; the evaluations function checks
that the name is stored when the round is created and serves the bytes to team members
(GET /rounds/{round_id}/items/{item_id}/picture).

The team page runs such an item by sending those bytes to /search as an ordinary upload: the public
search route gains no way to read the bucket, and the history record of the search keeps the bytes'
sha256 (`params.image_sha256`), which `rounds.validate_run` compares with the picture's name.
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

from pydantic import BaseModel, Field

from moodboard.artifacts import s3_errors
from moodboard.errors import Conflict, NotFound
from moodboard.settings import Settings

PICTURES_PREFIX = "rounds/pictures/"
# Pillow's format name -> the stored file's extension and media type.
EXTENSIONS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"), "MPO": ("jpg", "image/jpeg"), "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"), "GIF": ("gif", "image/gif"), "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tiff", "image/tiff"),
}
MEDIA_TYPES = {ext: media for ext, media in EXTENSIONS.values()}
NAME_PATTERN = r"^[0-9a-f]{64}\.(jpg|png|webp|gif|bmp|tiff)$"
_NAME = re.compile(NAME_PATTERN)
UPLOAD_PATH = "/rounds/pictures"


class UnknownPicture(NotFound):
    """No uploaded round picture is stored under that name."""


class _AlreadyStored(Conflict):
    """The same picture is already stored (its key is its content)."""


class StoredPicture(BaseModel):
    """An uploaded picture as stored: the name a round item gives as `picture`, and what it is."""

    picture: str = Field(description="<sha256>.<ext>: the name a round item gives as `picture`")
    sha256: str
    media_type: str
    bytes: int
    width: int
    height: int
    created: bool = Field(description="false when the same picture was already stored")


def picture_key(name: str) -> str:
    """The bucket key of a picture name (UnknownPicture for a name that cannot be one: never a key
    outside the prefix)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise UnknownPicture(f"{name!r} is not an uploaded picture's name (<sha256>.<ext>)",
                             details={"picture": name, "upload_url": UPLOAD_PATH})
    return PICTURES_PREFIX + name


def sha256_of(name: str) -> str:
    """The sha256 of a picture's bytes, from its name."""
    return name.partition(".")[0]


def store_picture(client: Any, bucket: str, data: bytes, *, settings: Settings) -> StoredPicture:
    """Check an uploaded picture with the search's limits and store its bytes once.

    Raises what moodboard.images.decode_image raises: ImageTooLarge (413) over the byte, pixel or
    decoded-size limit, UnsupportedImage (415) for what is not an image of an allowed format,
    CorruptImage (422) for a broken one, DecodersBusy (503); nothing is stored then.
    """
    from PIL import Image

    from moodboard.images import ALLOWED_FORMATS, decode_image

    decoded = decode_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
    width, height = decoded.size
    decoded.close()
    with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as header:  # the header only, already checked
        ext, media_type = EXTENSIONS.get(header.format or "", ("jpg", "image/jpeg"))
    sha = hashlib.sha256(data).hexdigest()
    name = f"{sha}.{ext}"
    created = True
    try:
        with s3_errors(f"store the round picture {name}", conflict=_AlreadyStored(name)):
            client.put_object(Bucket=bucket, Key=picture_key(name), Body=data, ContentType=media_type,
                              IfNoneMatch="*")
    except _AlreadyStored:
        created = False
    return StoredPicture(picture=name, sha256=sha, media_type=media_type, bytes=len(data), width=width,
                         height=height, created=created)


def picture_stored(client: Any, bucket: str, name: str) -> bool:
    """Whether a picture of that name is stored (a listing of its own key: with ListBucket granted for
    the prefix only, a missing key answers empty rather than 403)."""
    key = picture_key(name)
    with s3_errors(f"look for the round picture {name}"):
        response = client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    return any(entry.get("Key") == key for entry in response.get("Contents", []))


def read_picture(client: Any, bucket: str, name: str) -> tuple[bytes, str]:
    """A stored picture's bytes and media type; UnknownPicture when it is not stored."""
    key = picture_key(name)
    missing = UnknownPicture(f"the round picture {name} is not stored", details={"picture": name})
    with s3_errors(f"read the round picture {name}", missing=missing):
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body, MEDIA_TYPES[name.rpartition(".")[2]]
