"""The model bundle: manifest schema, reading and verification (runtime side).

A model bundle is a directory written by `model_export` (see docs/contracts.md): two ONNX graphs
that give projected CLIP embeddings, the tokenizer, the preprocessing config and manifest.json.
This module is the one definition of that format. The exporter imports `compute_fingerprint`,
`sha256_file` and the pydantic models from here, so writer and reader cannot drift apart.
It imports nothing heavier than pydantic: it runs in every Lambda.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moodboard.errors import BundleError
from moodboard.integrity import MANIFEST_FILE, sha256_file, verify_files

__all__ = ["sha256_file"]  # the exporter hashes with the same function the reader checks with

logger = logging.getLogger(__name__)

MODEL_FORMAT = "moodboard-model/1"
FINGERPRINT_HEX_CHARS = 32
PRECISIONS = ("fp32", "int8")
# Ends the description of a model trained from the random test model.
RANDOM_BASE_NOTE = "; the base is a random test model"

Graph = Literal["vision", "text"]
Precision = Literal["fp32", "int8"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSource(_Frozen):
    """Where the weights came from: hub id (or local dir name), revision, and whether they are (or, for
    a trained bundle, started as) the random test model."""

    id: str
    revision: str
    tiny: bool = False


class TextSpec(_Frozen):
    """Special token ids the embedder needs to frame and pad token sequences."""

    bos_id: int
    eos_id: int
    pad_id: int


class BundleFiles(_Frozen):
    """File names inside the bundle; graphs are keyed by precision."""

    vision: dict[Precision, str]
    text: dict[Precision, str]
    tokenizer: str
    preprocess: str

    def all(self) -> list[str]:
        """Every file the manifest lists, graphs first."""
        return [*self.vision.values(), *self.text.values(), self.tokenizer, self.preprocess]


class Fp32Parity(_Frozen):
    """Max absolute difference of embeddings, onnxruntime fp32 vs PyTorch, at export time."""

    image_max_abs: float
    text_max_abs: float


class Int8Parity(_Frozen):
    """Mean cosine similarity of int8 embeddings to fp32 ONNX embeddings, at export time."""

    image_mean_cosine: float
    text_mean_cosine: float


class Parity(_Frozen):
    """Parity figures measured by the exporter on generated inputs."""

    fp32: Fp32Parity
    int8: Int8Parity | None = None


class TrainingRecord(_Frozen):
    """How a trained bundle (`moodboard train`) came to be; absent for a bundle exported as is.

    `description` is the one line the CLI and the web page show for the model; the other fields
    record the base model, the catalog, the hyperparameters, the captions and the held-out figures
    before and after training (docs/contracts.md, "Training record").
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    method: Literal["finetune", "lit"]
    description: str
    base: dict[str, Any]
    catalog: dict[str, Any]
    hyperparameters: dict[str, Any]
    captions: dict[str, Any]
    held_out: dict[str, Any]


class ModelManifest(_Frozen):
    """manifest.json of a model bundle."""

    format: Literal["moodboard-model/1"] = MODEL_FORMAT
    source: ModelSource
    dim: int = Field(gt=0)
    opset: int
    context_length: int = Field(gt=0)
    text: TextSpec
    files: BundleFiles
    sha256: dict[str, str]
    parity: Parity
    fingerprint: str = Field(min_length=16)
    created: str
    exporter: dict[str, str] = Field(default_factory=dict)
    training: TrainingRecord | None = None
    # The cosine above which a product counts as a near-copy of a query picture, measured for
    # this model's image embeddings (`moodboard train` for EfficientNet-Lite0); None: the setting's
    # (QueryDefaults.near_copy_threshold, tuned for CLIP). See docs/contracts.md for the precedence.
    near_copy_threshold: float | None = Field(default=None, ge=0, le=1)

    @property
    def precisions(self) -> list[str]:
        """Precisions for which both graphs exist, e.g. ["fp32", "int8"]."""
        return [p for p in PRECISIONS if p in self.files.vision and p in self.files.text]

    @property
    def tiny(self) -> bool:
        """True for the untrained random test model: its results mean nothing. A model `moodboard train`
        made from it learned the catalog: not tiny here (its source still says so; see random_base)."""
        return self.source.tiny and self.training is None

    @property
    def random_base(self) -> bool:
        """True for a trained model whose base was the random test model."""
        return self.source.tiny and self.training is not None

    @property
    def description(self) -> str:
        """One line saying what the model is, for the CLI and the web page's banner: the training
        record's description (saying when the base was the random test model), else the source."""
        if self.training is not None:
            described = self.training.description
            if self.random_base and not described.endswith(RANDOM_BASE_NOTE):
                described += RANDOM_BASE_NOTE
            return described
        if self.tiny:
            return f"{self.source.id}: a random test model, results are not meaningful"
        return f"{self.source.id}@{self.source.revision[:12]}"


class PreprocessConfig(_Frozen):
    """preprocess.json: what CLIPImageProcessor does to an image, as plain numbers.

    Resize the shortest side to `shortest_edge` with `resample` (PIL enum, 3 = bicubic), centre
    crop to crop_height x crop_width, scale by rescale_factor, normalise with image_mean/image_std.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    shortest_edge: int = Field(gt=0)
    crop_height: int = Field(gt=0)
    crop_width: int = Field(gt=0)
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    resample: int = 3
    rescale_factor: float = 1 / 255
    do_convert_rgb: bool = True


def compute_fingerprint(
    *, vision_sha256: str, text_sha256: str, tokenizer_sha256: str, preprocess_sha256: str
) -> str:
    """Identify an embedding space from the files that define it.

    sha256 over the fp32 graphs', tokenizer's and preprocessing config's sha256. int8 graphs share
    their fp32 source's fingerprint (the precision is recorded separately), so an index built with
    one precision is accepted by the other.
    """
    material = "\n".join(
        [
            MODEL_FORMAT,
            f"vision:{vision_sha256}",
            f"text:{text_sha256}",
            f"tokenizer:{tokenizer_sha256}",
            f"preprocess:{preprocess_sha256}",
        ]
    )
    return hashlib.sha256(material.encode()).hexdigest()[:FINGERPRINT_HEX_CHARS]


def manifest_fingerprint(manifest: ModelManifest) -> str:
    """Recompute the fingerprint from the sha256 table of a manifest."""
    files = manifest.files
    try:
        return compute_fingerprint(
            vision_sha256=manifest.sha256[files.vision["fp32"]],
            text_sha256=manifest.sha256[files.text["fp32"]],
            tokenizer_sha256=manifest.sha256[files.tokenizer],
            preprocess_sha256=manifest.sha256[files.preprocess],
        )
    except KeyError as exc:
        raise BundleError(f"model manifest has no sha256 or fp32 graph for {exc.args[0]}") from exc


def load_manifest(bundle_dir: Path, *, verify: bool = True, precision: str | None = None) -> ModelManifest:
    """Read and check a bundle's manifest.json.

    Checks the format, that every listed file exists and, when `verify` is true, that the
    fingerprint matches the manifest's sha256 table and each file's sha256 matches the table
    (through moodboard.integrity: a sealed, unchanged file is not hashed again). With `precision`
    only the graphs of that precision are hashed, plus the tokenizer and preprocessing config: the
    graphs of the other precision are not served, and hashing them cost ~0.4 s of every cold start.
    Raises BundleError naming the offending file, so a half-copied or edited bundle is never served.
    """
    bundle_dir = Path(bundle_dir)
    manifest_path = bundle_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleError(f"not a model bundle: {manifest_path} is missing")
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {manifest_path}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != MODEL_FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else None
        raise BundleError(f"{manifest_path}: format {found!r} is not {MODEL_FORMAT!r}")
    try:
        manifest = ModelManifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BundleError(f"{manifest_path}: invalid field {where}: {first['msg']}") from exc
    if "fp32" not in manifest.files.vision or "fp32" not in manifest.files.text:
        raise BundleError(f"{manifest_path}: the fp32 graphs are not listed")

    for name in manifest.files.all():
        path = bundle_dir / name
        if not path.is_file():
            raise BundleError(f"model bundle file {name} is missing from {bundle_dir}")
        if name not in manifest.sha256:
            raise BundleError(f"model bundle file {name} has no sha256 in the manifest")
    if verify and manifest_fingerprint(manifest) != manifest.fingerprint:
        raise BundleError(f"{manifest_path}: fingerprint does not match the files' sha256")
    if verify:
        if precision is None:
            served = manifest.files.all()
        else:
            graph_path(manifest, bundle_dir, "vision", precision)  # BundleError for a precision not exported
            graph_path(manifest, bundle_dir, "text", precision)
            served = [manifest.files.vision[precision], manifest.files.text[precision],  # type: ignore[index]
                      manifest.files.tokenizer, manifest.files.preprocess]
        verify_files(bundle_dir, {name: manifest.sha256[name] for name in served}, label="model bundle file")
    logger.debug("model bundle %s ok (fingerprint %s)", bundle_dir, manifest.fingerprint)
    return manifest


def graph_path(manifest: ModelManifest, bundle_dir: Path, graph: Graph, precision: str = "fp32") -> Path:
    """Path of the vision or text ONNX graph at a precision; BundleError if it was not exported."""
    graphs = {"vision": manifest.files.vision, "text": manifest.files.text}.get(graph)
    if graphs is None:
        raise BundleError(f"unknown graph {graph!r}: expected 'vision' or 'text'")
    if precision not in graphs:
        available = ", ".join(sorted(graphs)) or "none"
        raise BundleError(
            f"the model bundle has no {precision} {graph} graph (exported precisions: {available})"
        )
    return Path(bundle_dir) / graphs[precision]


def load_preprocess(manifest: ModelManifest, bundle_dir: Path) -> PreprocessConfig:
    """Read the bundle's preprocessing config."""
    path = Path(bundle_dir) / manifest.files.preprocess
    try:
        return PreprocessConfig.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise BundleError(f"model bundle file {manifest.files.preprocess} is unreadable: {exc}") from exc


def write_manifest(manifest: ModelManifest, bundle_dir: Path) -> Path:
    """Write manifest.json (used by the exporter; kept here beside the reader)."""
    path = Path(bundle_dir) / MANIFEST_FILE
    # A bundle exported as is keeps the manifest it always had (no "training": null).
    exclude = {name for name in ("training", "near_copy_threshold") if getattr(manifest, name) is None} or None
    path.write_text(manifest.model_dump_json(indent=2, exclude=exclude) + "\n", encoding="utf-8")
    return path
