"""`moodboard index list|rollback VERSION`: the published index versions of the artifacts bucket
(moodboard.index_versions), and promoting one of them to CURRENT (a rollback when it is older).

The bucket is settings.artifacts_bucket (MOODBOARD_ARTIFACTS_BUCKET) unless --bucket names one;
the endpoint is AWS's unless --endpoint-url (or MOODBOARD_AWS_ENDPOINT_URL) points elsewhere, for
example at the embedded moto server `moodboard serve` prints. The promotion is the API's: the
conditional CURRENT write, refused for another model's version or when CURRENT moved meanwhile.
"""

from __future__ import annotations

import argparse

from moodboard.settings import get_settings
from moodboard_local.console import console


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("index", help="list published index versions, or roll back to one",
                              description="Published index versions of the artifacts bucket; promote one "
                                          "to CURRENT (rollback).")
    p.add_argument("action", choices=["list", "rollback"])
    p.add_argument("version", nargs="?", help="rollback: the version to make CURRENT")
    p.add_argument("--expected", metavar="VERSION", default=None,
                   help="rollback: only if CURRENT still is this version (else refused, 409 as in the API)")
    p.add_argument("--bucket", default=None, help="the artifacts bucket (default MOODBOARD_ARTIFACTS_BUCKET)")
    p.add_argument("--endpoint-url", default=None, help="an S3 endpoint other than AWS's (a moto server)")
    p.add_argument("--json", action="store_true", help="list: print the list as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moodboard import aws
    from moodboard.artifacts import ArtifactStore
    from moodboard.errors import ConfigError
    from moodboard.index_versions import IndexVersions

    settings = get_settings()
    if args.endpoint_url:
        settings = settings.model_copy(update={"aws_endpoint_url": args.endpoint_url})
    bucket = args.bucket or settings.artifacts_bucket
    if not bucket:
        raise ConfigError("no artifacts bucket: pass --bucket or set MOODBOARD_ARTIFACTS_BUCKET")
    versions = IndexVersions(ArtifactStore(bucket, aws.client("s3", settings)))
    if args.action == "list":
        listing = versions.list(keep=settings.index_keep_versions, keep_days=settings.index_keep_days)
        if args.json:
            console.print_json(listing.model_dump_json())
            return 0
        if not listing.items:
            console.print(f"no published index versions in s3://{bucket}", markup=False)
        for v in listing.items:
            mark = "current" if v.current else "previous" if v.previous else ""
            categories = len(v.categories) if v.categories is not None else "?"
            console.print(f"{v.version}  {v.created}  {v.count} products  {categories} product types  "
                          f"{v.model}  {v.catalog_key or '-'}  {mark}".rstrip(), markup=False)
        return 0
    if not args.version:
        raise ConfigError("index rollback needs a VERSION (see `moodboard index list`)")
    pointer = versions.promote(args.version, expected_version=args.expected, list_url="moodboard index list")
    console.print(f"CURRENT is now {pointer.version} (it replaced {pointer.previous or 'none'})", markup=False)
    return 0
