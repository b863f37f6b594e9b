"""A region of a picture: the part a shopper boxed, searched instead of the whole picture.

A region is given in fractions of the picture's width and height (x, y from the top left corner,
then width and height, each 0..1), so the same box holds for a 4000-pixel original, the 1024-pixel
copy a browser uploads and the thumbnail it was drawn on, and a shared link keeps it. It is checked
before anything is fetched (`check_region`), and cut out of the decoded picture before the model's
preprocessing (`crop_to_region`), which then sees only the region.
"""

from __future__ import annotations

import re
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, model_validator

from moodboard.errors import InvalidRegion

# The smallest region, in pixels of the decoded picture, on either side: below this the model would
# look at a blur of a few pixels blown up to its input size.
MIN_REGION_PIXELS = 8
# Fractions are compared with this slack: a box drawn to the very edge may round to 1.0000001.
EDGE_SLACK = 1e-6


class Region(BaseModel):
    """A box on a picture in fractions of its size: {x, y, width, height}, or "x,y,width,height"."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    x: float
    y: float
    width: float
    height: float

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        """A link or a form field carries the box as four comma-separated numbers."""
        if isinstance(value, str):
            parts = [part.strip() for part in re.split(r"[,\s]+", value.strip()) if part.strip()]
            if len(parts) != 4:
                raise ValueError("a region is four numbers: x,y,width,height (fractions of the picture)")
            return dict(zip(("x", "y", "width", "height"), parts))
        return value

    def as_text(self) -> str:
        return ",".join(f"{value:g}" for value in (self.x, self.y, self.width, self.height))


def check_region(region: Region, *, picture: str = "the picture") -> Region:
    """The region if it lies inside the picture and has an area; InvalidRegion (422) saying what is
    wrong otherwise. `picture` names the picture in the message ("picture 2")."""
    details = {"box": region.model_dump()}
    if region.width <= 0 or region.height <= 0:
        raise InvalidRegion(f"the region of {picture} has no area: its width and height must be above 0",
                            details=details)
    if region.width > 1 + EDGE_SLACK or region.height > 1 + EDGE_SLACK:
        raise InvalidRegion(f"the region of {picture} is larger than the picture: width and height are fractions "
                            f"of its size, at most 1 (got {region.width:g} x {region.height:g})", details=details)
    if not (0 <= region.x < 1 and 0 <= region.y < 1):
        raise InvalidRegion(f"the region of {picture} starts outside it: x and y are fractions of its size, "
                            f"from 0 up to 1 (got x={region.x:g}, y={region.y:g})", details=details)
    if region.x + region.width > 1 + EDGE_SLACK or region.y + region.height > 1 + EDGE_SLACK:
        edge = "right" if region.x + region.width > 1 + EDGE_SLACK else "bottom"
        raise InvalidRegion(f"the region of {picture} reaches past its {edge} edge (x + width and y + height "
                            f"must be at most 1)", details=details)
    return region


def region_pixels(region: Region, width: int, height: int) -> tuple[int, int, int, int]:
    """The region as a (left, top, right, bottom) pixel box of a width x height picture."""
    left = min(width - 1, max(0, round(region.x * width)))
    top = min(height - 1, max(0, round(region.y * height)))
    right = min(width, max(left + 1, round((region.x + region.width) * width)))
    bottom = min(height, max(top + 1, round((region.y + region.height) * height)))
    return left, top, right, bottom


def crop_to_region(image: Image.Image, region: Region | None, *, picture: str = "the picture") -> Image.Image:
    """The part of a decoded picture inside the region (the picture itself without one); InvalidRegion
    when the region covers fewer than MIN_REGION_PIXELS pixels on a side."""
    if region is None:
        return image
    check_region(region, picture=picture)
    left, top, right, bottom = region_pixels(region, *image.size)
    if right - left < MIN_REGION_PIXELS or bottom - top < MIN_REGION_PIXELS:
        raise InvalidRegion(
            f"the region of {picture} is only {right - left}x{bottom - top} pixels of its "
            f"{image.width}x{image.height}; "
            f"draw a larger box (at least {MIN_REGION_PIXELS} pixels a side)",
            details={"box": region.model_dump(), "pixels": [right - left, bottom - top]})
    return image.crop((left, top, right, bottom))
