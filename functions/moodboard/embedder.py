"""The runtime CLIP embedder: a model bundle run with onnxruntime, text tokenized with `tokenizers`.

Loads once per process (`Embedder.load`), then turns PIL images and strings into L2-normalised
float32 vectors in the bundle's embedding space. Text embeddings are kept in a small LRU cache: every
gist query embeds its product type's prompt ("a photo of a dress"), and a shop has a few dozen
types, so after the first query of a type the prompt costs no model run (docs/performance.md).
Nothing here imports torch or transformers, and onnxruntime is imported inside `load`, so importing
this module costs a light Lambda nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache
from PIL import Image

from moodboard.errors import BundleError, ConfigError
from moodboard.model_bundle import ModelManifest, graph_path, load_manifest, load_preprocess
from moodboard.preprocess import ImagePreprocessor
from moodboard.vectors import Vector, l2_normalize

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16
# Texts whose embeddings are kept (2 KiB each at 512 dimensions): every product type's prompt, plus
# repeated shopper texts and negatives.
TEXT_CACHE_SIZE = 1024
PROVIDERS = ["CPUExecutionProvider"]
VISION_INPUT = "pixel_values"
VISION_OUTPUT = "image_embeds"
TEXT_INPUTS = ("input_ids", "attention_mask")
TEXT_OUTPUT = "text_embeds"

TokenBatch = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]


@runtime_checkable
class EmbedderProtocol(Protocol):
    """What search, ingest and the API need from an embedder: the real one, or tests.fakes.FakeEmbedder.

    `fingerprint` names the model (an index records it and is searched only with the same model),
    `precision` the graphs it runs ("fp32" | "int8"), `tiny` whether it is the random test model
    (its results mean nothing), `source` where its weights came from, `description` what it is in
    one line and `trained` whether `moodboard train` made it (None and False for a fake);
    `near_copy_threshold` the bundle's own near-copy cosine (None: the setting's).
    """

    fingerprint: str
    dim: int
    precision: str
    tiny: bool
    source: str | None
    description: str | None
    trained: bool
    near_copy_threshold: float | None

    def embed_images(self, images: Sequence[Image.Image]) -> Vector:
        """(n, dim) L2-normalised float32 embeddings of RGB images."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> Vector:
        """(n, dim) L2-normalised float32 embeddings of texts."""
        ...


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and Lambda narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class ClipTokenizer:
    """CLIP tokenization with the bundle's tokenizer.json: lower-casing and whitespace clean-up come
    from the file's normalizer, BOS/EOS from its post-processor. Sequences are truncated to the
    context length with EOS kept last, and a batch is padded to its longest sequence, which is
    what CLIPTokenizerFast(padding=True, truncation=True, max_length=context_length) gives."""

    def __init__(self, tokenizer: Tokenizer, *, context_length: int, pad_id: int) -> None:
        pad_token = tokenizer.id_to_token(pad_id)
        if pad_token is None:
            raise BundleError(f"the tokenizer has no token with the pad id {pad_id}")
        tokenizer.enable_truncation(max_length=context_length)
        tokenizer.enable_padding(direction="right", pad_id=pad_id, pad_token=pad_token)
        self._tokenizer = tokenizer
        self.context_length = context_length
        self.pad_id = pad_id

    @classmethod
    def from_file(cls, path: str | Path, *, context_length: int, pad_id: int) -> ClipTokenizer:
        """Load a tokenizers JSON file; BundleError if it cannot be read."""
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise BundleError(f"cannot load tokenizer {path}: {exc}") from exc
        return cls(tokenizer, context_length=context_length, pad_id=pad_id)

    def __call__(self, texts: Sequence[str]) -> TokenBatch:
        """Token ids and attention mask, both int64 (n, longest sequence in the batch)."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        encodings = self._tokenizer.encode_batch(list(texts))
        if not encodings:
            return np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask


class Embedder:
    """CLIP image and text embeddings from a model bundle (see docs/contracts.md)."""

    def __init__(
        self,
        *,
        manifest: ModelManifest,
        precision: str,
        vision: onnxruntime.InferenceSession,
        text: onnxruntime.InferenceSession,
        tokenizer: ClipTokenizer,
        preprocessor: ImagePreprocessor,
        batch_size: int = DEFAULT_BATCH_SIZE,
        text_cache_size: int = TEXT_CACHE_SIZE,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        if text_cache_size < 0:
            raise ConfigError(f"text cache size must be at least 0, got {text_cache_size}")
        self.manifest = manifest
        self.fingerprint = manifest.fingerprint
        self.dim = manifest.dim
        self.precision = precision
        self.tiny = manifest.tiny
        self.source: str | None = manifest.source.id
        self.description: str | None = manifest.description
        self.trained = manifest.training is not None
        self.near_copy_threshold = manifest.near_copy_threshold
        self.tokenizer = tokenizer
        self.preprocessor = preprocessor
        self.batch_size = batch_size
        self.text_cache_size = text_cache_size
        self._vision = vision
        self._text = text
        self._text_cache: LRUCache[str, Vector] | None = LRUCache(text_cache_size) if text_cache_size else None
        self._text_cache_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        bundle_dir: Path,
        *,
        precision: str = "fp32",
        threads: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        verify: bool = True,
        text_cache_size: int = TEXT_CACHE_SIZE,
    ) -> Embedder:
        """Open a model bundle: check its manifest (and, with `verify`, every file's sha256), start one
        onnxruntime CPU session per graph and load the tokenizer and preprocessing config.

        `threads` caps onnxruntime's intra-op threads; by default it is the number of CPUs the process
        may use. Raises BundleError for a missing, corrupt or incomplete bundle (including a
        precision that was not exported) and ConfigError for bad arguments.
        """
        bundle_dir = Path(bundle_dir)
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        manifest = load_manifest(bundle_dir, verify=verify, precision=precision)
        vision_path = graph_path(manifest, bundle_dir, "vision", precision)
        text_path = graph_path(manifest, bundle_dir, "text", precision)
        threads = threads or available_cpus()
        vision = _session(vision_path, threads)
        text = _session(text_path, threads)
        _check_signature(vision, vision_path.name, (VISION_INPUT,), VISION_OUTPUT, manifest.dim)
        _check_signature(text, text_path.name, TEXT_INPUTS, TEXT_OUTPUT, manifest.dim)
        tokenizer = ClipTokenizer.from_file(
            bundle_dir / manifest.files.tokenizer,
            context_length=manifest.context_length,
            pad_id=manifest.text.pad_id,
        )
        preprocessor = ImagePreprocessor(load_preprocess(manifest, bundle_dir))
        logger.info(
            "loaded model %s (%s, %s, dim %d, %d threads%s)",
            manifest.source.id,
            manifest.fingerprint,
            precision,
            manifest.dim,
            threads,
            ", tiny test model" if manifest.tiny else "",
        )
        return cls(
            manifest=manifest,
            precision=precision,
            vision=vision,
            text=text,
            tokenizer=tokenizer,
            preprocessor=preprocessor,
            batch_size=batch_size,
            text_cache_size=text_cache_size,
        )

    def embed_images(self, images: Sequence[Image.Image]) -> Vector:
        """Embed images in batches: (n, dim) float32, each row of unit length. Any PIL mode is
        accepted (converted to RGB); decode untrusted bytes with moodboard.images first."""
        rows = [
            self._vision.run([VISION_OUTPUT], {VISION_INPUT: self.preprocessor(batch)})[0]
            for batch in _batches(images, self.batch_size)
        ]
        return self._finish(rows)

    def embed_texts(self, texts: Sequence[str]) -> Vector:
        """Embed texts in batches: (n, dim) float32, each row of unit length. Texts longer than the
        context length are truncated (the end is dropped). Texts embedded before come from the LRU
        cache; only the others run through the text graph, in batches padded to their longest."""
        if isinstance(texts, str):
            raise TypeError("embed_texts takes a sequence of strings, not one string")
        texts = list(texts)
        known = self._cached(texts)
        missing = [text for text in dict.fromkeys(texts) if text not in known]
        rows = []
        for batch in _batches(missing, self.batch_size):
            ids, mask = self.tokenizer(batch)
            rows.append(self._text.run([TEXT_OUTPUT], {"input_ids": ids, "attention_mask": mask})[0])
        if missing:
            fresh = dict(zip(missing, self._finish(rows)))
            self._remember(fresh)
            known.update(fresh)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([known[text] for text in texts])

    def _cached(self, texts: Sequence[str]) -> dict[str, Vector]:
        if self._text_cache is None:
            return {}
        with self._text_cache_lock:
            return {text: self._text_cache[text] for text in texts if text in self._text_cache}

    def _remember(self, fresh: dict[str, Vector]) -> None:
        if self._text_cache is None:
            return
        with self._text_cache_lock:
            for text, vector in fresh.items():
                vector.setflags(write=False)  # shared by later calls: nobody may change it in place
                self._text_cache[text] = vector

    def _finish(self, rows: list[np.ndarray]) -> Vector:
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(np.concatenate(rows, axis=0))


def _batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    """One CPU inference session with full graph optimisation, a fixed thread count and no spinning.

    Each session has its own intra-op pool. Spinning would let its idle threads spin for a moment
    after a run instead of sleeping, which makes a vision run alone faster; it stays off because
    spinning threads hold their cores while the rest of the query runs (the other session's pool,
    numpy's BLAS threads in the exact category search), and a whole query is slower with it.
    The measurements: docs/performance.md, "Embedding" and "Query end to end".
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=PROVIDERS)
    except Exception as exc:  # onnxruntime raises its own unrelated exception types
        raise BundleError(f"cannot load ONNX graph {path.name}: {str(exc).splitlines()[0]}") from exc


def _check_signature(
    session: onnxruntime.InferenceSession, name: str, inputs: tuple[str, ...], output: str, dim: int
) -> None:
    """Fail at load time, not at the first request, when a graph does not fit the contract."""
    have_inputs = {i.name for i in session.get_inputs()}
    missing = [i for i in inputs if i not in have_inputs]
    if missing:
        have = ", ".join(sorted(have_inputs))
        raise BundleError(f"{name} lacks the input(s) {', '.join(missing)} (has {have})")
    outputs = {o.name: o for o in session.get_outputs()}
    if output not in outputs:
        raise BundleError(f"{name} lacks the output {output} (has {', '.join(sorted(outputs))})")
    last = outputs[output].shape[-1] if outputs[output].shape else None
    if isinstance(last, int) and last != dim:
        raise BundleError(f"{name} gives {last}-dimensional embeddings but the manifest says {dim}")
