"""Domain errors. Raised low, turned into HTTP responses or CLI messages once, at the edge.

Each class carries the HTTP status it maps to; the CLI maps every one of them to exit code 2.
"""

from __future__ import annotations


class MoodboardError(Exception):
    """Base of every error moodboard raises on purpose."""

    status_code: int = 400

    def __init__(self, message: str, *, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ConfigError(MoodboardError):
    """Settings or arguments that cannot work together."""

    status_code = 500


class BundleError(MoodboardError):
    """A model or index bundle is missing, corrupt or of the wrong version."""

    status_code = 500


class FingerprintMismatch(BundleError):
    """An index was built with a different model than the one loaded."""


class HubUnreachable(MoodboardError):
    """The model hub cannot be reached, so a checkpoint cannot be downloaded."""

    status_code = 503


class ExportError(MoodboardError):
    """A model export failed or its graphs disagree with PyTorch beyond the parity limit."""

    status_code = 500


class RequestTooLarge(MoodboardError):
    """The request body is over the size limit (refused before it is parsed)."""

    status_code = 413


class NestingTooDeep(MoodboardError):
    """A JSON body nests arrays or objects deeper than the API allows (refused before parsing)."""

    status_code = 422


class InvalidQuery(MoodboardError):
    """A search request is missing a query or combines parameters wrongly."""

    status_code = 422


class InvalidRegion(InvalidQuery):
    """A region (crop box) of a picture has no area, reaches outside it, or is too small to search."""


class UnknownCategory(MoodboardError):
    """The requested product type is not in the catalog."""

    status_code = 404


class NotFound(MoodboardError):
    """A product, search, job or other record does not exist."""

    status_code = 404


class Conflict(MoodboardError):
    """The request contradicts stored state (e.g. rating a product not in that search)."""

    status_code = 409


class ImageError(MoodboardError):
    """An image cannot be decoded."""

    status_code = 415


class UnsupportedImage(ImageError):
    """The bytes are not an image, or not a format we decode."""

    status_code = 415


class CorruptImage(ImageError):
    """The bytes claim to be an image but are truncated or broken."""

    status_code = 422


class ImageTooLarge(ImageError):
    """The image is over the byte, pixel or decoded-size limit."""

    status_code = 413


class DecodersBusy(MoodboardError):
    """Every image-decode slot of this process stayed taken for longer than the wait limit."""

    status_code = 503


class FetchError(MoodboardError):
    """A remote resource could not be fetched."""

    status_code = 502


class BlockedURL(FetchError):
    """The URL's scheme or resolved address is not allowed (SSRF guard)."""

    status_code = 400


class FetchTimeout(FetchError):
    """The upstream was too slow."""

    status_code = 504


class FetchTooLarge(FetchError):
    """The upstream sent more than the size limit."""

    status_code = 413


class BadContentEncoding(FetchError):
    """The upstream's gzip/deflate body is invalid or cut short."""

    status_code = 502


class CatalogError(MoodboardError):
    """A catalog file cannot be read at all (bad rows are reported, not raised)."""


class ArchiveError(CatalogError):
    """A catalog archive is corrupt, over a size limit, or holds a member that may not be unpacked."""


class NothingLoaded(CatalogError):
    """No product of a catalog could be loaded, so nothing was written or published."""

    def __init__(self, message: str, *, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class LoadNeedsConfirmation(CatalogError):
    """A load would remove too many products or a whole category and was not confirmed; nothing was published."""

    status_code = 409


class LoadBusy(MoodboardError):
    """Another load is writing the same output right now."""

    status_code = 409


class ShardFailed(MoodboardError):
    """A shard of a sharded load could not be embedded (its batch is retried, then counted as failed)."""

    status_code = 502


class TooManyShardsFailed(MoodboardError):
    """More of a sharded load's shards failed than it tolerates, so nothing was published."""

    status_code = 502


class StoreError(MoodboardError):
    """A storage backend (S3, DynamoDB) failed."""

    status_code = 503


class IndexUnavailable(StoreError):
    """No index bundle has been published yet, or none could be loaded."""


class PublishConflict(StoreError):
    """Another publish moved the CURRENT pointer first."""

    status_code = 409


class Unauthorized(MoodboardError):
    """A team or admin route was called without valid credentials."""

    status_code = 401


class Forbidden(MoodboardError):
    """A signed-in team member called a route that needs the admin role."""

    status_code = 403


class InvalidCursor(MoodboardError):
    """A pagination cursor is malformed or belongs to another listing."""

    status_code = 400


class RatingsError(MoodboardError):
    """Stored ratings cannot be read (bad export file, refused or failed HTTP listing) or compared."""


class UnknownIndexVersion(NotFound):
    """No published index version has that name."""


class IndexModelMismatch(Conflict):
    """An index version was built with another model than the one being served."""
