"""Export a CLIP checkpoint into a model bundle (docs/contracts.md, "Model bundle").

One path for every checkpoint, hub or local, real or random: load with transformers, export the
vision and text towers with optimum (projected embeddings, dynamic batch and text length), check
parity against PyTorch, optionally quantise to int8, write tokenizer.json, preprocess.json and
manifest.json. The bundle is assembled beside its destination and renamed into place at the end
(moodboard.staging.staged_dir), so a failed export never leaves a half-written bundle behind.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from moodboard.errors import ConfigError, ExportError
from moodboard.integrity import MANIFEST_FILE
from moodboard.model_bundle import (
    BundleFiles,
    ModelManifest,
    ModelSource,
    Parity,
    PreprocessConfig,
    TextSpec,
    TrainingRecord,
    compute_fingerprint,
    load_manifest,
    sha256_file,
    write_manifest,
)
from moodboard.staging import staged_dir
from model_export.hub import Checkpoint, resolve_checkpoint
from model_export.parity import fp32_parity, int8_parity, parity_inputs
from model_export.quantize import PRECISION as INT8, int8_name, quantize_int8
from model_export.tiny import build_tiny_clip, tiny_source_id

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
OPSET = 17
QUANTIZE_CHOICES = (INT8,)
VISION_FILE = "vision.onnx"
TEXT_FILE = "text.onnx"
TOKENIZER_FILE = "tokenizer.json"
PREPROCESS_FILE = "preprocess.json"
EXPORTER_PACKAGES = ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime")


def export_model(
    model: str,
    out_dir: Path,
    *,
    quantize: str | None = None,
    revision: str | None = None,
) -> Path:
    """Export a CLIP checkpoint (hub id or local directory) into a model bundle at out_dir.

    `model` is e.g. DEFAULT_MODEL or "patrickjohncyh/fashion-clip" (pinned to `revision`, default
    the latest commit, whose sha the manifest records) or a transformers checkpoint directory.

    Raises HubUnreachable when a hub id cannot be downloaded, ConfigError for a bad argument or a
    checkpoint that is not CLIP, ExportError when the graphs fail the fp32 parity check.
    """
    _check_quantize(quantize)
    _check_out_dir(Path(out_dir))
    checkpoint = resolve_checkpoint(model, revision=revision)
    return export_checkpoint(checkpoint, Path(out_dir), quantize=quantize)


def export_tiny(out_dir: Path, *, size: str = "tiny", quantize: str | None = None) -> Path:
    """Build a seeded random CLIP locally and export it through the same path as a real one.

    size="tiny" is the test model (seconds to export); size="base" has ViT-B/32's shape for
    performance work. Same size, same fingerprint.
    """
    _check_quantize(quantize)
    _check_out_dir(Path(out_dir))
    source_id = tiny_source_id(size)
    with tempfile.TemporaryDirectory(prefix=f"{source_id}-") as tmp:
        path = build_tiny_clip(Path(tmp), size=size)
        checkpoint = Checkpoint(path=path, source_id=source_id, revision="local")
        return export_checkpoint(checkpoint, Path(out_dir), quantize=quantize, tiny=True)


def export_checkpoint(
    checkpoint: Checkpoint,
    out_dir: Path,
    *,
    quantize: str | None = None,
    tiny: bool = False,
    source: ModelSource | None = None,
    training: TrainingRecord | None = None,
) -> Path:
    """Export a checkpoint already on disk; the common path of export_model and export_tiny.

    `source` and `training` override what the manifest says about the model (`moodboard train`
    exports its result from a temporary checkpoint, under the name it gives it).
    """
    _check_quantize(quantize)
    _check_out_dir(out_dir)
    model, tokenizer, processor = _load(checkpoint.path)
    return write_bundle(
        model, tokenizer, _preprocess_config(processor), out_dir,
        export_graphs=_export_graphs,
        image_size=model.config.vision_config.image_size,
        dim=model.config.projection_dim,
        context_length=model.config.text_config.max_position_embeddings,
        source=source or ModelSource(id=checkpoint.source_id, revision=checkpoint.revision, tiny=tiny),
        quantize=quantize,
        training=training,
    )


def write_bundle(
    model: Any,
    tokenizer: Any,
    preprocess: PreprocessConfig,
    out_dir: Path,
    *,
    export_graphs: Callable[[Any, Path], None],
    image_size: int,
    dim: int,
    context_length: int,
    source: ModelSource,
    quantize: str | None = None,
    training: TrainingRecord | None = None,
) -> Path:
    """Export any dual encoder into a bundle: graphs (by `export_graphs`), the fp32 parity check,
    optional int8, tokenizer, preprocessing config and manifest, staged and moved into place.

    `model` answers get_image_features / get_text_features like CLIPModel (the parity reference);
    `export_graphs(model, folder)` writes VISION_FILE and TEXT_FILE into folder.
    """
    _check_quantize(quantize)
    _check_out_dir(out_dir)
    with staged_dir(out_dir) as staging:
        export_graphs(model, staging)
        inputs = parity_inputs(tokenizer, image_size=image_size)
        parity = Parity(fp32=fp32_parity(model, staging / VISION_FILE, staging / TEXT_FILE, inputs))
        vision_files, text_files = {"fp32": VISION_FILE}, {"fp32": TEXT_FILE}
        if quantize == INT8:
            vision_files[INT8], text_files[INT8] = int8_name(VISION_FILE), int8_name(TEXT_FILE)
            for name in (VISION_FILE, TEXT_FILE):
                quantize_int8(staging / name, staging / int8_name(name))
            int8 = int8_parity(
                (staging / VISION_FILE, staging / TEXT_FILE),
                (staging / vision_files[INT8], staging / text_files[INT8]),
                inputs,
            )
            parity = parity.model_copy(update={"int8": int8})
        _save_tokenizer(tokenizer, staging / TOKENIZER_FILE)
        (staging / PREPROCESS_FILE).write_text(preprocess.model_dump_json(indent=2) + "\n", encoding="utf-8")
        files = BundleFiles(
            vision=vision_files, text=text_files, tokenizer=TOKENIZER_FILE, preprocess=PREPROCESS_FILE
        )
        manifest = _manifest(source, dim, context_length, tokenizer, files, parity, staging, training=training)
        write_manifest(manifest, staging)
        load_manifest(staging, verify=True)
        staging.chmod(0o755)
    logger.info("model bundle %s written (fingerprint %s)", out_dir, manifest.fingerprint)
    return out_dir


def _check_quantize(quantize: str | None) -> None:
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise ConfigError(f"unknown quantisation {quantize!r}: expected one of {', '.join(QUANTIZE_CHOICES)}")


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to replace a directory that holds something other than a model bundle."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILE).is_file()):
        raise ConfigError(f"{out_dir} exists and is not a model bundle; choose an empty or new directory")


def _load(path: Path) -> tuple[Any, Any, Any]:
    """CLIPModel (fp32, eval), CLIPTokenizerFast and CLIPImageProcessor from a checkpoint dir."""
    import torch
    from transformers import AutoConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizerFast

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the checkpoint config in {path}: {exc}".splitlines()[0]) from exc
    if config.model_type != "clip":
        raise ConfigError(f"{path} holds a {config.model_type!r} model, not CLIP")
    try:
        model = CLIPModel.from_pretrained(path, dtype=torch.float32).eval()
        tokenizer = CLIPTokenizerFast.from_pretrained(path)
        processor = CLIPImageProcessor.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the CLIP checkpoint in {path}: {exc}".splitlines()[0]) from exc
    return model, tokenizer, processor


def _save_tokenizer(tokenizer: Any, path: Path) -> None:
    """Save the fast tokenizer's tokenizers JSON without padding or truncation settings.

    transformers leaves the settings of its last call on the backend tokenizer; the bundle gets a
    neutral file (the embedder pads and truncates from the manifest's context_length and pad_id),
    so its bytes, and the fingerprint, do not depend on what the exporter tokenized before.
    """
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    backend.save(str(path))


def _preprocess_config(processor: Any) -> PreprocessConfig:
    """The numbers of CLIPImageProcessor as preprocess.json; ConfigError for steps the embedder lacks."""
    size, crop = dict(processor.size), dict(processor.crop_size)
    steps = ("do_resize", "do_center_crop", "do_rescale", "do_normalize")
    if "shortest_edge" not in size or not all(getattr(processor, step, True) for step in steps):
        flags = {step: getattr(processor, step, None) for step in steps}
        raise ConfigError(f"unsupported image preprocessing: size {size}, {flags}")
    return PreprocessConfig(
        shortest_edge=size["shortest_edge"],
        crop_height=crop["height"],
        crop_width=crop["width"],
        image_mean=tuple(processor.image_mean),
        image_std=tuple(processor.image_std),
        resample=int(processor.resample),
        rescale_factor=float(processor.rescale_factor),
        do_convert_rgb=bool(getattr(processor, "do_convert_rgb", True)),
    )


def _export_graphs(model: Any, out_dir: Path) -> None:
    """Export both towers with optimum (TorchScript exporter, as optimum pins on torch >= 2.9)."""
    import torch
    from optimum.exporters.onnx import export_models

    from model_export.onnx_configs import TEXT, VISION, CLIPTowerOnnxConfig

    models_and_configs = {
        VISION: (model, CLIPTowerOnnxConfig(model.config, VISION)),
        TEXT: (model, CLIPTowerOnnxConfig(model.config, TEXT)),
    }
    try:
        with warnings.catch_warnings():
            # The tracer's notes on shape-dependent branches: harmless for CLIP, whose image size is
            # fixed and whose text length is dynamic (the parity check runs several lengths).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Exporting aten::index operator")
            # optimum deliberately uses torch's TorchScript exporter (dynamo=False) on torch >= 2.9;
            # torch warns that this exporter is legacy. The parity check is what vouches for the graphs.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"optimum\.exporters|torch\.onnx")
            export_models(
                models_and_onnx_configs=models_and_configs,
                output_dir=out_dir,
                opset=OPSET,
                output_names=[VISION_FILE, TEXT_FILE],
            )
    except Exception as exc:  # torch.onnx raises many unrelated types
        raise ExportError(f"ONNX export failed: {exc}".splitlines()[0]) from exc
    stray = [p.name for p in out_dir.iterdir() if p.name not in (VISION_FILE, TEXT_FILE)]
    if stray:
        raise ExportError(f"the export wrote external data files {stray}; graphs must be self-contained")


def _manifest(
    source: ModelSource,
    dim: int,
    context_length: int,
    tokenizer: Any,
    files: BundleFiles,
    parity: Parity,
    bundle_dir: Path,
    *,
    training: TrainingRecord | None = None,
) -> ModelManifest:
    sha256 = {name: sha256_file(bundle_dir / name) for name in files.all()}
    fingerprint = compute_fingerprint(
        vision_sha256=sha256[files.vision["fp32"]],
        text_sha256=sha256[files.text["fp32"]],
        tokenizer_sha256=sha256[files.tokenizer],
        preprocess_sha256=sha256[files.preprocess],
    )
    eos_id = tokenizer.eos_token_id
    return ModelManifest(
        source=source,
        dim=dim,
        opset=OPSET,
        context_length=context_length,
        text=TextSpec(
            bos_id=tokenizer.bos_token_id,
            eos_id=eos_id,
            pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id,
        ),
        files=files,
        sha256=sha256,
        parity=parity,
        fingerprint=fingerprint,
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        exporter={name: _version(name) for name in EXPORTER_PACKAGES},
        training=training,
    )


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"
