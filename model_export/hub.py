"""Find a CLIP checkpoint: a local directory, the Hugging Face cache, or a download from the hub.

Resolving a hub id pins it to a commit sha (recorded in the manifest as the revision) and fetches
only what an export needs: config, tokenizer files, preprocessor config and one weights file.
When the hub cannot be reached and nothing is cached, the user gets one line that says so and
points at --tiny, after a short timeout rather than minutes of retries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from moodboard.errors import ConfigError, HubUnreachable

logger = logging.getLogger(__name__)

HUB_TIMEOUT_SECONDS = 10.0
METADATA_FILES = [
    "config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
]
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class Checkpoint:
    """A transformers checkpoint directory on disk and what it was resolved from."""

    path: Path
    source_id: str
    revision: str


def hub_unreachable(model: str) -> HubUnreachable:
    """The one-line error for an unreachable hub, naming the offline alternative."""
    return HubUnreachable(
        f"cannot reach the Hugging Face Hub to download {model!r} and it is not cached; "
        "run with --tiny to export a small random CLIP offline"
    )


def resolve_checkpoint(
    model: str, *, revision: str | None = None, timeout: float = HUB_TIMEOUT_SECONDS
) -> Checkpoint:
    """Turn a local directory or a hub id (at an optional revision) into a checkpoint on disk.

    Raises HubUnreachable when the hub cannot be reached (offline mode, DNS or connection
    failure, timeout) and no cached snapshot exists; ConfigError when the hub says the
    repository or revision does not exist.
    """
    local = Path(model).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ConfigError(f"{local} is not a transformers checkpoint (no config.json)")
        return Checkpoint(path=local.resolve(), source_id=model, revision=revision or "local")

    import requests
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError as exc:
        raise ConfigError(f"{model!r} is neither a local directory nor a valid hub model id") from exc
    if constants.HF_HUB_OFFLINE:
        return _cached_checkpoint(model, revision)
    try:
        info = HfApi().model_info(model, revision=revision, timeout=timeout)
    except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError) as exc:
        raise ConfigError(f"the hub has no accessible model {model!r} at revision {revision or 'main'}") from exc
    except (OfflineModeIsEnabled, requests.RequestException, OSError) as exc:
        logger.info("hub unreachable (%s); looking in the local cache", type(exc).__name__)
        return _cached_checkpoint(model, revision)

    names = {sibling.rfilename for sibling in info.siblings or []}
    weights = next((name for name in WEIGHT_FILES if name in names), None)
    if weights is None:
        raise ConfigError(f"{model!r} has no PyTorch weights ({' or '.join(WEIGHT_FILES)})")
    logger.info("downloading %s@%s (%s)", model, info.sha, weights)
    try:
        path = snapshot_download(
            model, revision=info.sha, allow_patterns=[*METADATA_FILES, weights], etag_timeout=timeout
        )
    except (OfflineModeIsEnabled, requests.RequestException, OSError) as exc:
        raise hub_unreachable(model) from exc
    return Checkpoint(path=Path(path), source_id=model, revision=str(info.sha))


def _cached_checkpoint(model: str, revision: str | None) -> Checkpoint:
    """A snapshot already in the Hugging Face cache, or HubUnreachable."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(model, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, OSError) as exc:
        raise hub_unreachable(model) from exc
    if not (path / "config.json").is_file():
        raise hub_unreachable(model)
    logger.info("using cached snapshot %s", path)
    return Checkpoint(path=path, source_id=model, revision=path.name)
