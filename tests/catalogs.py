"""Generated catalogs uploaded to a (moto) bucket for loader tests."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from moodboard_local.demo_catalog import generate_demo_catalog

# The artifacts bucket and region of the moto fixture `moto_bucket` (tests/conftest.py).
BUCKET = "moodboard-artifacts-test"
REGION = "us-east-1"


def upload_demo_catalog(s3: Any, bucket: str, prefix: str, folder: Path, *,
                        extra_rows: list[dict[str, str]] = ()) -> list[str]:
    """A generated catalog (2 types x 3) plus extra rows, uploaded with its images under `prefix`;
    returns the generated products' ids."""
    catalog = generate_demo_catalog(folder, per_category=3, categories=["dress", "lamp"])
    with catalog.open() as fh:
        rows = list(csv.DictReader(fh))
    with catalog.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        for row in extra_rows:
            writer.writerow({**{k: "" for k in rows[0]}, **row})
    s3.upload_file(str(catalog), bucket, prefix + "catalog.csv")
    for image in (catalog.parent / "images").iterdir():
        s3.upload_file(str(image), bucket, prefix + "images/" + image.name)
    return [row["id"] for row in rows]
