"""A region of a picture: checked before anything is fetched, cut out before preprocessing."""

from __future__ import annotations

import pytest
from moodboard.errors import InvalidQuery, InvalidRegion
from moodboard.regions import MIN_REGION_PIXELS, Region, check_region, crop_to_region
from PIL import Image
from pydantic import ValidationError


def test_a_region_inside_the_picture_is_kept() -> None:
    region = Region(x=0.25, y=0.0, width=0.75, height=1.0)
    assert check_region(region) is region


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ({"x": 0.2, "y": 0.2, "width": 0.0, "height": 0.3}, "the region of picture 2 has no area"),
        ({"x": 0.2, "y": 0.2, "width": 0.3, "height": -0.1}, "the region of picture 2 has no area"),
        ({"x": 1.2, "y": 0.1, "width": 0.1, "height": 0.1}, "starts outside it: x and y are fractions"),
        ({"x": 0.1, "y": -0.5, "width": 0.1, "height": 0.1}, "starts outside it"),
        ({"x": 0.6, "y": 0.1, "width": 0.5, "height": 0.2}, "reaches past its right edge"),
        ({"x": 0.1, "y": 0.9, "width": 0.2, "height": 0.2}, "reaches past its bottom edge"),
        ({"x": 0.0, "y": 0.0, "width": 1e300, "height": 1e300}, "is larger than the picture"),
        ({"x": 0.0, "y": 0.0, "width": 40000, "height": 0.5}, r"at most 1 \(got 40000 x 0.5\)"),
    ],
    ids=["zero-width", "negative-height", "right-of-it", "above-it", "past-right", "past-bottom", "huge",
         "pixels-not-fractions"],
)
def test_a_region_outside_the_picture_empty_or_huge_is_refused_saying_why(box: dict, message: str) -> None:
    with pytest.raises(InvalidRegion, match=message) as error:
        check_region(Region(**box), picture="picture 2")
    assert error.value.status_code == 422 and isinstance(error.value, InvalidQuery)
    assert error.value.details["box"] == Region(**box).model_dump()


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "wide"])
def test_a_region_that_is_not_four_finite_numbers_is_invalid(value: object) -> None:
    with pytest.raises(ValidationError):
        Region(x=0.1, y=0.1, width=value, height=0.2)


def test_a_region_reads_from_link_text() -> None:
    assert Region.model_validate("0.1, 0.2,0.5 ,0.25") == Region(x=0.1, y=0.2, width=0.5, height=0.25)
    with pytest.raises(ValidationError, match="four numbers"):
        Region.model_validate("0.1,0.2,0.5")


def test_the_crop_is_the_regions_pixels() -> None:
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    image.paste((0, 0, 255), (100, 50, 200, 100))  # bottom right quarter is blue

    crop = crop_to_region(image, Region(x=0.5, y=0.5, width=0.5, height=0.5))

    assert crop.size == (100, 50)
    assert crop.getcolors() == [(100 * 50, (0, 0, 255))]
    assert crop_to_region(image, None) is image


def test_a_region_of_a_few_pixels_is_refused_after_decoding() -> None:
    image = Image.new("RGB", (100, 100))
    with pytest.raises(InvalidRegion, match=f"only 5x5 pixels of its 100x100; draw a larger box \\(at least "
                                            f"{MIN_REGION_PIXELS} pixels a side\\)"):
        crop_to_region(image, Region(x=0.5, y=0.5, width=0.05, height=0.05))
